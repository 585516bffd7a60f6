"""The driver (reference) side: track the performer's face, frame by frame.

``stream`` decodes the reference at the output rate and yields, per output frame, the
performer's smoothed landmarks and torso motion together with the frame itself (the
mouth interior is taken from it). It is meant to run on a background thread (see ``video.prefetch``) so
that face tracking overlaps rendering.

Frames where the face is lost hold the last tracked landmarks, and the frame they were
tracked on (the mouth interior is taken from it); frames before the first detection use
the first detection. A face lost for longer eases to the performer's rest (``Settle``).
Smoothing is a One-Euro filter in face widths, so detector jitter never reaches the
pixels while blinks stay sharp. When the face is
missing from more than half of the clip the stream raises ASSET.INVALID as soon as that
is certain (not only at the end).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import pathlib
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from service.engine import contracts, landmarks, retarget, topology, torso, video

#: Smallest share of reference frames with a tracked face for a render to go ahead.
MIN_TRACKED = 0.5
#: The reference's frames are worked on at most this long (px, longer side): a phone's
#: 4K clip is reduced to 1920x1080 as it is decoded. Its 4K frames cost the tracking 55 ms
#: each (converting, copying and scaling 25 MB for MediaPipe and the torso), and an 8 s
#: clip rendered at 1.8 times real time; the face mesh itself works on a 192 px crop, and the
#: mouth interior is taken at well above the size the character shows it.
LONGEST = 1920
#: Frames sampled across the clip to choose the performer's rest expression.
REST_SAMPLES = 24
#: Lips count as closed within this much of the smallest gap seen (``mouth.gap``).
REST_CLOSED_SLACK = 0.02
#: The landmarks whose shape picks the rest frame among closed-lipped ones.
REST_SHAPE = np.concatenate([topology.OUTER_LIPS, topology.INNER_LIPS, topology.BROWS])
#: One-Euro parameters for the driver landmarks (face widths, Hz). The speed that opens
#: the filter up is itself smoothed at ``D_CUTOFF``: at the filter's usual 1 Hz, a mouth
#: snapping open in speech showed in the first frame at half its opening (the talking
#: portrait's frame 56: 0.054 of the eyes' span against 0.106 detected), and at 4 Hz the
#: judge's mouth and eye correlations rose by 0.01-0.04 on the held-out pairs, for 12 %
#: more frame-to-frame jitter (still under half the detector's own).
MIN_CUTOFF = 2.0
BETA = 8.0
D_CUTOFF = 4.0
#: The landmarks that must lie inside the reference's frame for a detection to count:
#: the eyes' openings and the inner lips. FaceMesh guesses a face's parts past the
#: frame's edge: a mouth cut by the bottom edge read wide open, its interior painted
#: from the edge's smeared rows, and an eye past the left edge read as a turn of the
#: head. Such a frame counts as the face lost (held, then eased to rest). Up to
#: ``IN_FRAME_SLACK`` of the face's width past the edge is let pass: a face filling the
#: frame reads well a little past it (a clip zooming in read fine to 6 %, not from 8 %).
IN_FRAME = np.concatenate([topology.RIGHT_EYE.ring, topology.LEFT_EYE.ring, topology.INNER_LIPS])
IN_FRAME_SLACK = 0.05
#: A performer whose face is lost (turned away, out of shot, behind a hand) is held as
#: last seen for ``LOST_HOLD_S``, then eased to their rest over ``LOST_EASE_S``, and
#: back to them over ``FOUND_EASE_S`` once found again (``Settle``).
LOST_HOLD_S = 0.5
LOST_EASE_S = 0.5
FOUND_EASE_S = 0.25
#: A reference slower than the output rate (12, 15 or 20 fps) shows each of its frames
#: at two output instants or more; the face found on it is blended toward the next
#: frame's at the instants between them (``_detections``). Held instead, the character
#: moved in steps: a 12 fps clip made it judder at 12 Hz. A frame shown for longer
#: than ``BLEND_MAX_S`` (a stretch where the picture stands still) is held as it is.
BLEND_MAX_S = 0.25
#: Source frames shown for up to this many output frames' time are not blended (a 23.976 fps
#: clip's are shown for 1.001 of one).
BLEND_SLACK = 1.05
#: A performer upside down throughout (a clip stored turned half round without a display
#: matrix saying so, or flipped top to bottom) is tracked with the frames turned upright.
#: FaceMesh follows a face turned a quarter round, but fitted an upright mesh to one
#: upside down, eyes on its mouth, and the character's face was wrecked in every frame.
#: Which way is up is asked of the two judges (``landmarks.FaceTracker.judges``: their
#: scores' sum, 0..2) on the first ``ORIENT_VOTES`` sampled frames with a face: where the
#: face as shown scores under ``UPRIGHT_SURE``, the frame turned half round is looked at
#: too, and it counts for the turn if its face scores ``UPRIGHT_MARGIN`` more; the clip
#: is turned if most count so. On 24 sampled frames each, 14 upright clips (the shared
#: ones, and the expressive one darkened, overexposed, blurred, reduced, at crf 51, small
#: in a big frame, rocked 40 degrees, a quarter turned, a hand passing over the face)
#: scored 1.78-1.94 as shown but for 6 frames under the hand (0.74 and up), and at most
#: 1.82 turned, which beat them by the margin on two of those 6 only; that clip upside
#: down or flipped scored 0.81-1.76 as shown (median 1.62), and 1.90-1.95 turned.
ORIENT_VOTES = 6
UPRIGHT_SURE = 1.85
UPRIGHT_MARGIN = 0.1
#: The performer's usual tilt (the eye line's median over the sampled frames, which the
#: tilt is transferred as a change from) is taken as it is within ``USUAL_TILT``
#: degrees of level: their habit, or the camera's. Beyond it only that much is: a
#: performer tilted 40 degrees through most of a clip had that as their usual, and the
#: character stood upright through it and tilted the other way at its upright opening.
#: The shared clips' usual tilts are -5.1 to 1.6 degrees.
USUAL_TILT = 6.0
#: A hand over the face: FaceMesh goes on giving landmarks under it, guessed, and the
#: character's lips stretched and an eye stared. The landmark model's face flag
#: (``landmarks.FaceTracker.flag``) is asked on every ``COVER_EVERY``-th frame with a
#: face; under ``COVER_FLAG`` the face counts as lost (held, then eased to rest) until
#: a later check passes. A hand passing over the expressive clip's face took the flag
#: from 1.00 to 0.00-0.27 while it covered an eye or the mouth; on every frame of the
#: shared clips it is 1.00. A check takes 4-10 ms (the crop turned upright and the
#: 192 px model), too much for every frame.
COVER_EVERY = 6
COVER_FLAG = 0.5


@dataclasses.dataclass(frozen=True)
class RestPose:
    """The performer at rest: the chosen frame's landmarks (478, 3), each eye's usual
    opening over the sampled frames (the median: blinks and wide-eyed moments aside), and
    the head's usual pose over them against that frame (the median; its tilt within
    ``USUAL_TILT`` of level). ``turned``: the performer is upside down, and tracked in
    frames turned half round (``ORIENT_VOTES``), which ``points`` are in."""

    points: np.ndarray
    eyes: tuple[float, float]
    pose: retarget.HeadPose
    turned: bool = False


@dataclasses.dataclass(frozen=True)
class DriverSample:
    """One output frame's worth of driver: landmarks (478, 3) in reference pixels.

    ``frame`` is the BGR reference frame the landmarks were tracked on (where the face
    is lost, the last one it was found on), or None for frames before the face was
    first found (their landmarks are the first detection's). ``tracked``: whether the
    face was found on this frame itself. ``torso``: the performer's shoulders and chest
    since the first tracked frame, or None when the clip shows too little below the
    face to follow them (``torso.TorsoTracker``).
    """

    points: np.ndarray
    frame: np.ndarray | None
    torso: torso.TorsoMotion | None = None
    tracked: bool = True


class Settle:
    """How far to drive the character toward the performer's rest (0: the performer as
    tracked, 1: at rest; ``retarget.DriverFrame.toward_rest``): where their face has been
    lost for longer than ``LOST_HOLD_S``, eased there, and back once it is found again.

    Held for good, a performer who walked out of shot or turned away left the character
    frozen mid-word (its mouth open and painted, one eye half shut) until they came back,
    and then it snapped to their new expression in one frame. A clip that opens without
    the face opens at rest (it held the first expression found, a pout and a sideways
    look, for the 1.8 s before the face showed).
    """

    def __init__(self, fps: int) -> None:
        self._hold = round(LOST_HOLD_S * fps)
        out, back = max(1, round(LOST_EASE_S * fps)), max(1, round(FOUND_EASE_S * fps))
        # How far toward the rest, in whole steps of both eases (out * back to be there):
        # counted so, the ease lands on 0 and 1 exactly.
        self._full, self._out, self._in = out * back, back, out
        self._at: int | None = None  # (None before the first sample)
        self._lost = 0  # frames in a row the face has been lost for

    def __call__(self, sample: DriverSample) -> float:
        if self._at is None:  # the first sample: a clip opening without the face opens at rest
            self._lost, self._at = (0, 0) if sample.tracked else (self._hold, self._full)
        if sample.tracked:
            self._lost, step = 0, -self._in
        else:
            self._lost += 1
            step = self._out if self._lost > self._hold else 0
        self._at = min(self._full, max(0, self._at + step))
        eased = self._at / self._full
        return eased * eased * (3 - 2 * eased)


def in_frame(points: np.ndarray | None, frame: np.ndarray) -> np.ndarray | None:
    """``points``, a detection on ``frame``, if its eyes and inner lips are inside the
    frame (``IN_FRAME``, ``IN_FRAME_SLACK``), else None."""
    if points is None:
        return None
    high, wide = frame.shape[:2]
    slack = IN_FRAME_SLACK * float(np.ptp(points[:, 0]))
    key = points[IN_FRAME, :2]
    low, top = key.min(axis=0)
    right, bottom = key.max(axis=0)
    inside = min(low, top) >= -slack and right <= wide - 1 + slack and bottom <= high - 1 + slack
    return points if inside else None


def _lost(found: int, count: int) -> contracts.EngineError:
    return contracts.asset_invalid(
        "The performer's face in the reference video could not be tracked for most of the "
        f"clip (found in {found / max(1, count):.0%} of frames); use a clip with a clearly "
        "visible face."
    )


def frame_size(width: int, height: int) -> tuple[int, int]:
    """The size (width, height) of the frames the driver works on, for a reference of
    ``width`` x ``height`` (``LONGEST``)."""
    return video.reduced_size(width, height, LONGEST) or (width, height)


def rest_pose(
    path: pathlib.Path, fps: int, count: int, step: Callable[[], None] = lambda: None, ahead: int = 1
) -> RestPose | None:
    """Landmarks of the performer at rest: eyes at their usual opening, lips closed, lips
    and brows at their most usual (``_most_typical``); and the head's usual pose.

    Expressions are transferred as changes from this frame. Using the first frame instead
    would make a clip that starts mid-word (mouth open) drive the character's mouth
    *shut* whenever the performer closes theirs. ``REST_SAMPLES`` frames spread over the
    clip are examined (a bounded cost whatever the length); None if no face is found, or
    none that looks human (``landmarks.FaceTracker.looks_human``: once one does, the rest are not
    asked).
    ``step()`` runs after each sampled frame is decoded (progress, cancellation).

    The sampled frames are decoded on a thread up to ``ahead`` samples in advance
    (memory: ``ahead`` frames), so decoding overlaps loading the face model; frames no
    other frame is predicted from are not decoded (a sample is the frame on screen or
    one a frame or two earlier), which took the expressive clip's scan from 0.64 to
    0.41 s.
    """
    stride = max(1, count // REST_SAMPLES)
    found: dict[bool, list[np.ndarray]] = {False: [], True: []}  # as shown, turned
    human = {False: False, True: False}  # whether one of them looks human
    votes: list[bool] = []  # per sampled frame with a face, until decided: for the turn
    frames = video.prefetch(
        video.iter_frames(path, fps, count, stride=stride, nearby=True, longest=LONGEST), depth=max(1, ahead)
    )
    with contextlib.closing(frames):
        first = next(frames, None)  # starts the decoding thread before the model loads
        with landmarks.FaceTracker(video=False) as tracker:
            for frame in itertools.chain(() if first is None else (first,), frames):
                step()
                deciding = len(votes) < ORIENT_VOTES
                ways = (False, True) if deciding else (_upside_down(votes),)
                scores = _looked_at(tracker, frame, ways, found, human)
                if deciding and scores:
                    votes.append(scores.get(True, 0.0) > scores.get(False, 0.0) + UPRIGHT_MARGIN)
    turned = _upside_down(votes)
    return at_rest(found[turned], turned) if human[turned] else None


def _upside_down(votes: list[bool]) -> bool:
    """Whether most of the sampled frames voted for the turn (``ORIENT_VOTES``)."""
    return 2 * sum(votes) > len(votes)


def _looked_at(
    tracker: landmarks.FaceTracker,
    frame: np.ndarray,
    ways: tuple[bool, ...],
    found: dict[bool, list[np.ndarray]],
    human: dict[bool, bool],
) -> dict[bool, float]:
    """``rest_pose`` on a sampled frame: the face found on ``frame`` as shown, or turned
    half round, for each of ``ways`` (while which way is up is undecided, both: turned
    only where the face as shown is not surely upright, ``UPRIGHT_SURE``), added to
    ``found`` under whether it was turned; returns how upright each face found scored.
    Once decided, a face is judged only until one has looked human (``human``)."""
    scores = {}
    for turned in ways:
        shown, points = _found_on(tracker, frame, turned)
        if points is None:
            continue
        found[turned].append(points)
        if len(ways) == 1 and human[turned]:
            break
        judges = tracker.judges(shown, points)
        human[turned] = human[turned] or landmarks.human(*judges)
        scores[turned] = sum(judges)
        if scores[turned] >= UPRIGHT_SURE:
            break
    return scores


def _found_on(
    tracker: landmarks.FaceTracker, frame: np.ndarray, turned: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``frame``, ``turned`` half round or not (as ``stream``'s frames are then decoded:
    ``video.half_turned``), and the face found on it (``in_frame``)."""
    shown = video.orient(frame, video.half_turned(None)) if turned else frame
    return shown, in_frame(tracker.detect(shown), shown)


def at_rest(found: list[np.ndarray], turned: bool = False) -> RestPose:
    """The ``RestPose`` among the landmarks ``found`` on the sampled frames (not empty),
    in frames ``turned`` half round or not."""
    from service.engine import mouth

    per_eye = np.array([retarget.eye_openness(p) for p in found])
    eyes = per_eye.sum(axis=1)
    gaps = np.array([mouth.gap(p) for p in found])
    usual = np.abs(eyes / np.median(eyes) - 1.0) <= 0.12
    if not usual.any():
        usual[:] = True
    closed = np.flatnonzero(usual & (gaps <= gaps[usual].min() + REST_CLOSED_SLACK))
    median = np.median(per_eye, axis=0)
    rest = found[_most_typical(found, closed)]
    model = retarget.DriverModel(rest)
    usual = retarget.HeadPose.usual([model.pose(p) for p in found])
    level = retarget.eye_line(rest)  # the rest frame's tilt: the usual one's is against it
    held = float(np.clip(level + usual.roll, -USUAL_TILT, USUAL_TILT)) - level
    return RestPose(rest, (float(median[0]), float(median[1])), dataclasses.replace(usual, roll=held), turned)


def _most_typical(faces: list[np.ndarray], candidates: np.ndarray) -> int:
    """The index, among ``candidates`` (the closed-lipped ``faces``), of the face whose
    lips and brows, with the head's pose taken out, lie nearest their median over all
    the ``faces``.

    A closed mouth is not yet a neutral one. The narrowest lip gap picked the talking
    portrait's closed-lipped smile (the gap is measured against the mouth's width, which
    a smile stretches), and the mouth width nearest the usual one then picked a pout
    pulled down at one corner (its frame 209): the expression is taken against the rest,
    so every other frame moved the character's lips by the difference, and the judge's
    mouth correlation there was 0.88 where a relaxed rest gave 0.92-0.95. The median is
    taken over all the faces, not the closed-lipped or usual-eyed ones only: on the
    expressive clip those are two or three samples, a frown among them.
    """
    model = retarget.DriverModel(faces[0])
    shapes = np.array([model.decompose(face).expression[REST_SHAPE, :2] for face in faces])
    typical = np.median(shapes, axis=0)
    distance = np.linalg.norm(shapes[candidates] - typical, axis=2).mean(axis=1)
    return int(candidates[int(np.argmin(distance))])


def stream(
    path: pathlib.Path, fps: int, count: int, *, body: bool = True, turned: bool = False
) -> Iterator[DriverSample]:
    """Yield ``count`` samples of the performer, tracked and smoothed; with ``body`` their
    torso is followed too (without it, samples carry no torso: nothing would use it);
    ``turned``, in the frames turned half round (``RestPose.turned``)."""
    pending = 0  # frames seen before the first detection
    missed = 0
    found_count = 0
    smoother = landmarks.FaceSmoother(fps, min_cutoff=MIN_CUTOFF, beta=BETA, d_cutoff=D_CUTOFF)
    follow = torso.TorsoTracker(fps) if body else None
    allowed_misses = count - int(np.ceil(MIN_TRACKED * count))
    seen: np.ndarray | None = None  # the last frame the face was found on
    with landmarks.FaceTracker(video=True) as tracker:
        frames = video.iter_timed(path, fps, count, longest=LONGEST, turned=turned)
        for frame, found in _detections(frames, fps, _Uncovered(tracker)):
            if found is None:
                missed += 1
                if missed > allowed_misses:
                    raise _lost(found_count, count)
            else:
                found_count += 1
                seen = frame
            points = smoother(found)
            if points is None:
                pending += 1
                continue
            motion = None if follow is None else follow(frame, points)
            for _ in range(pending):  # frames before the first detection: its landmarks
                yield DriverSample(points=points, frame=None, torso=motion, tracked=False)
            pending = 0
            yield DriverSample(points=points, frame=seen, torso=motion, tracked=found is not None)
    if not smoother.tracking:
        raise _lost(0, count)


class _Uncovered:
    """The face found on a frame (``in_frame``), or None where it is covered
    (``COVER_EVERY``, ``COVER_FLAG``): the stream's detector."""

    def __init__(self, tracker: landmarks.FaceTracker) -> None:
        self._tracker = tracker
        self._seen = 0  # frames the face was found on
        self._covered = False  # as the last check found it

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        points = in_frame(self._tracker.detect(frame), frame)
        if points is None:
            return None
        if self._seen % COVER_EVERY == 0:
            self._covered = self._tracker.flag(frame, points) < COVER_FLAG
        self._seen += 1
        return None if self._covered else points


def _detections(
    frames: Iterable[tuple[np.ndarray, float, float]],
    fps: int,
    detect: Callable[[np.ndarray], np.ndarray | None],
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Per output frame of ``frames`` (``video.iter_timed``): the frame and the face
    found on it by ``detect`` (None: none).

    A source frame shown at several output instants is looked at once, and where it is
    shown for longer than an output frame (``BLEND_SLACK``, ``BLEND_MAX_S``), the face
    at each instant is the one found on it blended toward the next frame's, by the time
    gone since it was first shown. Not across a cut (``landmarks.CUT_JUMP``), nor
    toward a frame the face is lost on.
    """
    shown: tuple[np.ndarray, np.ndarray | None, float, float] | None = None  # on screen
    instants: list[float] = []  # the output times (s) it is shown at
    for i, (frame, start, end) in enumerate(frames):
        if shown is None or frame is not shown[0]:
            found = detect(frame)
            if shown is not None:
                yield from _blended(shown, instants, found, fps)
            shown, instants = (frame, found, start, end), []
        instants.append(i / fps)
    if shown is not None:
        yield from _blended(shown, instants, None, fps)


def _blended(
    shown: tuple[np.ndarray, np.ndarray | None, float, float],
    instants: list[float],
    after: np.ndarray | None,
    fps: int,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``_detections`` at the output ``instants`` one source frame is shown at: ``shown``
    is the frame, the face found on it, and when it is shown from and until; ``after``
    the face found on the next one."""
    frame, found, start, end = shown
    span = end - start
    towards = None  # from the face found toward the next one's
    if (
        found is not None
        and after is not None
        and BLEND_SLACK / fps < span <= BLEND_MAX_S
        and landmarks.face_jump(found, after) <= landmarks.CUT_JUMP
    ):
        towards = after - found
    for t in instants:
        if towards is None or t <= start:
            yield frame, found
        else:
            yield frame, found + min(1.0, (t - start) / span) * towards
