"""The character side of a render: a still picture or a video, framed on the canvas.

Both kinds yield one ``CharacterFrame`` per output frame: the framed canvas, its face
landmarks, its warp rig, the person mask and what to show behind the person. A still is
analysed once (face, segmentation, clean background plate) and repeats; a video is
decoded frame by frame and its face tracked in every frame, so its own scene and camera
motion are kept; if it is shorter than the reference it then plays backwards and
forwards again (ping-pong) from the frames it has shown, kept compressed.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import pathlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from service.engine import (
    assets,
    composite,
    contracts,
    eyeballs,
    eyefit,
    framing,
    landmarks,
    lids,
    retarget,
    rig,
    segmentation,
    video,
)

T = TypeVar("T")

NO_FACE = "No human-like face was found in the character {kind}."
#: A face found only with the picture turned half round (FaceMesh finds faces turned up
#: to about 90 degrees): told as such, not as no face at all.
UPSIDE_DOWN = (
    "The face in the character image is upside down; turn the picture upright "
    "(no human-like face was found the way it is shown)."
)
NO_FACE_SOON = (
    "No human-like face was found in the first {seconds:.1f} s of the character video;"
    " the face must be visible for most of the clip."
)
#: Longest side used to look for the face in a picture (detector input is small anyway).
DETECT_MAX_SIDE = 1280
#: A face narrower than this (px) in the reduced picture is looked at again in the
#: full-size one.
SMALL_FACE = 160
#: A character video is searched for its face through the first half of what the
#: render shows of it (its frames up to the reference's length), and at least this many
#: frames; on every ``VIDEO_SEARCH_STRIDE``-th frame. Frames before the face is first
#: seen (a title card, a fade in, a person walking into shot) are shown as they are.
VIDEO_SEARCH_FRAMES = 24
VIDEO_SEARCH_STRIDE = 4
#: A video character's face and person mask are found on every this many frames and
#: interpolated between (a second FaceMesh and a segmentation were a quarter of a video
#: render's CPU). On the shared character video, faces interpolated over 3 frames are
#: 0.36 px from detected ones on average (p95 0.9 px at 1280x720): the detector's own
#: frame-to-frame noise is 0.32 px.
ANALYSE_EVERY = 3
#: How long (s) a character video's face is held where it was last found while it is
#: not found (a blink of the detector, a hand passing); past that the frames show as
#: they are until it is found again. Held for good, the character's eyes, lids and lips
#: were painted on over whatever followed: a cut to black, the person walking out.
FACE_HOLD_S = 0.5
#: JPEG quality of the frames a character video shorter than the reference keeps for
#: playing back and forth: about 95 KB per 1280x720 frame (a raw one is 2.8 MB), 0.8
#: grey levels from the original on average, 5 ms to compress and 6 to restore.
REEL_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class CharacterFrame:
    """One frame of the character, ready to be animated.

    ``base`` is what the output shows where nothing moves; ``background`` what shows
    where the person moved away from (only within ``plate_area`` when that is given: a
    still's clean plate differs from the picture there); ``mask`` the soft person mask
    of ``canvas``.
    """

    canvas: np.ndarray
    points: np.ndarray
    rig: rig.Rig
    mask: np.ndarray
    background: np.ndarray
    base: np.ndarray
    #: Makes the lids of the character's eyes as they narrow and shut (None: no face).
    shut_eyes: lids.ShutEyes | None = None
    #: Where ``background`` is an inpainted fill (float32 0..1; None: nowhere).
    plate_area: np.ndarray | None = None
    #: The eyes' openings carried out past their lids, for the gaze (None: not drawn).
    eyeballs: eyeballs.Eyeballs | None = None


def find_face(image: np.ndarray) -> np.ndarray | None:
    """Face landmarks of a still picture in its own pixels, or None (also for a face
    that does not look human: ``landmarks.HUMAN_SCORE``)."""
    import cv2

    h, w = image.shape[:2]
    factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = (
        cv2.resize(image, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_AREA)
        if factor < 1
        else image
    )
    with landmarks.FaceTracker(video=False) as tracker:
        points = tracker.detect(small)
        if points is None:
            return None
        points = points / factor
        if factor < 1 and np.ptp(points[:, 0]) * factor < SMALL_FACE:
            # A face small in the reduced picture: its landmarks again, from the full one.
            again = tracker.detect_around(image, points)
            if again is not None:
                points = again
        return points if tracker.looks_human(image, points) else None


class StillCharacter:
    """A character picture: analysed once, the same frame for the whole render."""

    def __init__(
        self, path: pathlib.Path, width: int, height: int, step: Callable[[], None] = lambda: None
    ) -> None:
        """Analyse the picture; ``step()`` runs between stages (progress, cancellation)."""
        image = assets.load_image(path)
        points = find_face(image)
        if points is None:
            if find_face(image[::-1, ::-1]) is not None:  # turned half round: say so
                raise contracts.asset_invalid(UPSIDE_DOWN)
            raise contracts.asset_invalid(NO_FACE.format(kind="image"))
        step()
        fr = framing.choose(image.shape[1], image.shape[0], points, width, height)
        canvas = framing.render(image, fr)
        #: The sharp picture on the canvas, when it leaves bands beside it (None: covers).
        self.window = framing.window(fr, image.shape[1], image.shape[0])
        found = fr.to_canvas(points)
        drawn = eyefit.DrawnEyes.find(canvas, found)
        points = found if drawn is None else drawn.points
        with segmentation.Segmenter() as seg:
            mask = composite.person_mask(seg.mask(canvas, points), points)
        step()
        # With bands, the plate is filled from the picture alone, short of the feathered
        # edge (where the bands' colour is mixed in); and the picture's edges hold the
        # person they cut (``Rig``).
        picture = None if self.window is None else self.window.inner
        plate, plate_area = composite.clean_plate(
            canvas, mask, picture, composite.plate_factor(float(np.ptp(points[:, 0])))
        )
        step()
        self.frame = CharacterFrame(
            canvas=canvas,
            points=points,
            rig=rig.Rig(points, width, height, composite.mask_box(mask), picture=picture),
            mask=mask,
            background=plate,
            base=canvas,
            shut_eyes=lids.ShutEyes.of(canvas, found, drawn),
            plate_area=plate_area,
            eyeballs=eyeballs.Eyeballs(canvas, points),
        )

    def frames(self) -> Iterator[CharacterFrame]:
        while True:
            yield self.frame


class VideoCharacter:
    """A character video: framed once (from its opening face), tracked every frame.

    A video shorter than the render plays backwards from its end, then forwards again,
    and so on (a loop would cut back to its opening shot and jump the person there). Its
    frames are kept for that as they are first shown, compressed (``_Reel``): decoding a
    video backwards would hold all of them raw. Played back, a frame needs no decoding,
    face tracking or segmentation, only its rig.
    """

    def __init__(
        self,
        path: pathlib.Path,
        width: int,
        height: int,
        count: int,
        fps: int,
        step: Callable[[], None] = lambda: None,
        duration_s: float | None = None,
    ) -> None:
        """Find the face, looking through the first half of what the render shows of the
        video (``VIDEO_SEARCH_FRAMES`` at least); ``step()`` runs between the frames looked at.
        ``duration_s``: the video's length, its picture's (``assets.probe`` has it;
        default: read here, ``video.stream_seconds``).
        Frames are kept for playing back only if it is shorter than ``count`` frames (or
        of unknown length), and from the first the turn back may reach by it, less a
        second's margin; the ``_Reel`` lets go of any that turn out not to be needed."""
        self._path, self._w, self._h, self._count, self._fps = path, width, height, count, fps
        if duration_s is None:
            duration_s = video.stream_seconds(path)
        self._bounces = duration_s is None or duration_s * fps < count
        own = int(duration_s * fps) if duration_s is not None else 0
        self._keep_from = max(0, own - 1 - (count - own) - fps)
        search = max(VIDEO_SEARCH_FRAMES, (count if duration_s is None else min(count, own)) // 2)
        first_face = None
        first_frame = None
        searched = 0
        with landmarks.FaceTracker(video=False) as tracker:
            for frame in video.iter_frames(
                path, fps, search, hold=False, stride=VIDEO_SEARCH_STRIDE, cover=(width, height)
            ):
                step()
                searched += 1
                first_frame = frame
                first_face = tracker.detect(frame)
                if first_face is not None and tracker.looks_human(frame, first_face):
                    break
                first_face = None
        if first_face is None or first_frame is None:
            if searched < len(range(0, search, VIDEO_SEARCH_STRIDE)):  # the video ended first
                raise contracts.asset_invalid(NO_FACE.format(kind="video"))
            raise contracts.asset_invalid(NO_FACE_SOON.format(seconds=search / fps))
        h, w = first_frame.shape[:2]
        self._framing = framing.choose(w, h, first_face, width, height)
        #: The sharp picture on the canvas, when it leaves bands beside it (None: covers).
        self.window = framing.window(self._framing, w, h)
        #: Where the sharp picture is on the canvas, whose edges hold the person (``Rig``).
        self._picture = None if self.window is None else self.window.inner
        first_canvas, face = framing.render(first_frame, self._framing), self._framing.to_canvas(first_face)
        #: Drawn eyes, fitted on the first face and carried to every frame (None: real).
        self._drawn = eyefit.DrawnEyes.find(first_canvas, face)
        #: The lids, made on the first face (their narrowing measured on each frame's).
        self._lids = lids.ShutEyes.of(first_canvas, face, self._drawn)

    def frames(self) -> Iterator[CharacterFrame]:
        """``count`` frames: the video's own, then, if it ends first, the same played
        backwards and forwards again."""
        reel = (
            _Reel(self._w, self._h, self._count, self._keep_from, self._lids, self._picture)
            if self._bounces
            else None
        )
        shown: CharacterFrame | None = None
        produced = 0
        for shown in self._played():
            if reel is not None:
                reel.keep(shown)
            yield shown
            produced += 1
        assert shown is not None  # iter_frames raises on a video with no frames
        if reel is None or not reel.kept or len(reel) == 1:  # (longer by its header, or a still)
            for _ in range(produced, self._count):
                yield shown
            return
        for index in itertools.islice(_bounce(len(reel)), self._count - produced):
            shown = reel.frame(index, shown)
            yield shown

    def _played(self) -> Iterator[CharacterFrame]:
        """The video's own frames, up to ``count``; the face and person mask are found on
        every ``ANALYSE_EVERY``-th frame and on the last, and interpolated between."""
        tracker = landmarks.FaceTracker(video=True)
        seg = segmentation.Segmenter()
        eyes = lids.OpenEyes()
        rate = self._fps / ANALYSE_EVERY
        smoother = landmarks.FaceSmoother(rate, min_cutoff=1.0, beta=2.0, hold=math.ceil(FACE_HOLD_S * rate))
        held: list[np.ndarray] = []  # canvases waiting for the next analysed frame
        before: _Look | None = None
        previous: np.ndarray | None = None  # the last analysed canvas
        shown: CharacterFrame | None = None  # the last frame yielded
        try:
            frames = video.iter_frames(
                self._path, self._fps, self._count, hold=False, cover=(self._w, self._h)
            )
            for i, (frame, last) in enumerate(_marking_last(frames)):
                canvas = framing.render(frame, self._framing)
                if i % ANALYSE_EVERY and not last:
                    held.append(canvas)
                    continue
                after = self._look(canvas, tracker, seg, smoother)
                for between, look in zip(
                    held, _looks_between(held, before, after, previous, canvas), strict=True
                ):
                    shown = self._frame(between, look, eyes, shown)
                    yield shown
                held.clear()
                shown = self._frame(canvas, after, eyes, shown)
                yield shown
                before, previous = after, canvas
        finally:
            tracker.close()
            seg.close()

    def _look(
        self,
        canvas: np.ndarray,
        tracker: landmarks.FaceTracker,
        seg: segmentation.Segmenter,
        smoother: landmarks.FaceSmoother,
    ) -> _Look | None:
        """Analyse one frame: its raw and smoothed face and the person mask (None until
        the first face is seen)."""
        import cv2

        found = tracker.detect(canvas)
        if found is None and smoother.tracking:
            # Tracking lost the face (a cut, a fast turn): MediaPipe looks for it afresh on
            # its next call, which would otherwise come only ANALYSE_EVERY frames later.
            found = tracker.detect(canvas)
        points = smoother(found)
        if points is None:
            return None
        if self._drawn is not None:
            points = eyefit.fit_drawn_eyes(canvas, points, self._drawn.moves(points))
        half = cv2.resize(canvas, (self._w // 2, self._h // 2), interpolation=cv2.INTER_AREA)
        mask = composite.person_mask(seg.mask(half, points * 0.5), points, (self._h, self._w))
        opening = None if found is None else np.array(retarget.eye_openness(found))
        return _Look(opening=opening, points=points, mask=mask, box=composite.mask_box(mask))

    def _frame(
        self, canvas: np.ndarray, look: _Look | None, eyes: lids.OpenEyes, previous: CharacterFrame | None
    ) -> CharacterFrame:
        if look is None:  # no face yet: show the frame as it is
            return _passthrough(canvas)
        points = eyes.apply(canvas, look.points, look.opening)
        return CharacterFrame(
            canvas=canvas,
            points=points,
            rig=rig.Rig(
                points,
                self._w,
                self._h,
                look.box,
                like=None if previous is None else previous.rig,
                picture=self._picture,
            ),
            mask=look.mask,
            background=canvas,
            base=canvas,
            shut_eyes=self._lids,
            eyeballs=eyeballs.Eyeballs(canvas, points, quick=True),
        )


@dataclasses.dataclass(frozen=True)
class _Look:
    """What the analysis of one character video frame found."""

    #: Each eye's opening (lid distance over eye width) in this frame's own detection, if
    #: any: smoothing flattens a blink in ``points``.
    opening: np.ndarray | None
    points: np.ndarray  # smoothed landmarks (the last ones seen when there is no detection)
    mask: np.ndarray
    box: tuple[int, int, int, int]

    @staticmethod
    def cut(before: _Look | None, after: _Look | None) -> bool:
        """Whether the video cut between these analysed frames (``landmarks.CUT_JUMP``):
        nothing is interpolated across a cut."""
        if before is None or after is None:
            return False
        return landmarks.face_jump(before.points, after.points) > landmarks.CUT_JUMP

    @staticmethod
    def between(before: _Look | None, after: _Look | None, t: float) -> _Look | None:
        """The analysis of a frame a share ``t`` of the way from ``before`` to ``after``.

        Each eye takes the smaller of the two openings: a blink seen on either side may
        already (or still) be closing the eye in the frames between.
        """
        if before is None or after is None:
            return after or before
        if before.opening is None or after.opening is None:
            opening = after.opening if before.opening is None else before.opening
        else:
            opening = np.minimum(before.opening, after.opening)
        # The nearer frame's person mask: it is feathered over more pixels than a person
        # moves in a frame, and blending two would cost more than the rest of this.
        near = before if t < 0.5 else after
        return _Look(
            opening=opening,
            points=before.points + (after.points - before.points) * t,
            mask=near.mask,
            box=near.box,
        )


def _looks_between(
    held: list[np.ndarray],
    before: _Look | None,
    after: _Look | None,
    before_canvas: np.ndarray | None,
    after_canvas: np.ndarray,
) -> list[_Look | None]:
    """The analyses of the ``held`` frames between two analysed ones: interpolated, or,
    across a cut or where only one side has a face, each frame takes the side it looks
    like (64x36 thumbnails). A video opening on a title card or black gave the card's
    last frames before the first face that face's landmarks, and a face was warped and
    a mouth painted onto the card (and the mouth's colours were sampled from it)."""
    if not held or (before is None and after is None):
        return [None] * len(held)
    if before is not None and after is not None and not _Look.cut(before, after):
        n = len(held) + 1
        return [_Look.between(before, after, k / n) for k in range(1, n)]
    assert before_canvas is not None
    first, second = _thumb(before_canvas), _thumb(after_canvas)
    looks = []
    for frame in held:
        small = _thumb(frame)
        looks.append(before if np.abs(small - first).mean() <= np.abs(small - second).mean() else after)
    return looks


def _thumb(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA).astype(np.int16)


def _marking_last(items: Iterator[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last (one item of look-ahead)."""
    it = iter(items)
    try:
        item = next(it)
    except StopIteration:
        return
    for following in it:
        yield item, False
        item = following
    yield item, True


def _bounce(n: int) -> Iterator[int]:
    """Frame indices after a first pass over ``n`` frames: n-2 .. 0, 1 .. n-1, n-2 .. (the
    turning frames are not shown twice in a row)."""
    if n == 1:
        yield from itertools.repeat(0)
        return
    period = 2 * (n - 1)
    for k in itertools.count(n):
        k %= period
        yield k if k < n else period - k


@dataclasses.dataclass(frozen=True)
class _Kept:
    """One frame of a ``_Reel``: JPEG data, and None for frames shown before any face."""

    canvas: np.ndarray
    points: np.ndarray | None
    mask: np.ndarray | None
    box: tuple[int, int, int, int]


class _Reel:
    """The frames a character video has shown, JPEG-compressed, for playing them again.

    A frame keeps its canvas, landmarks and person mask (at half size: it is feathered
    wider than that, and consecutive frames often share one); its rig is rebuilt. Of a
    render of ``count`` frames, once ``s`` have been shown the turn back can reach no
    lower than frame ``2s - 1 - count``: frames below that are let go, and frames before
    ``first`` are not kept at all. Asked for a frame not kept, the nearest kept one stands
    in.
    """

    def __init__(
        self,
        width: int,
        height: int,
        count: int,
        first: int = 0,
        shut_eyes: lids.ShutEyes | None = None,
        picture: tuple[int, int, int, int] | None = None,
    ) -> None:
        """``shut_eyes``: the video's lids (the same on every frame); ``picture``: where
        its sharp picture is on the canvas (``Rig``)."""
        self._w, self._h = width, height
        self._lids = shut_eyes
        self._picture = picture
        self._count, self._first = count, first
        self._seen = 0
        self._frames: collections.deque[_Kept] = collections.deque()
        self._offset = 0  # the index of the first frame kept
        self._mask: tuple[np.ndarray, np.ndarray] | None = None  # the last (mask, kept)
        self._restored: tuple[np.ndarray, np.ndarray] | None = None  # the last (kept, mask)

    def __len__(self) -> int:
        """Frames shown so far, kept or not."""
        return self._seen

    @property
    def kept(self) -> int:
        return len(self._frames)

    def keep(self, frame: CharacterFrame) -> None:
        """The next frame shown (kept if it may be played back)."""
        import cv2

        index = self._seen
        self._seen += 1
        low = 2 * self._seen - 1 - self._count
        while self._frames and self._offset < low:
            self._frames.popleft()
            self._offset += 1
        if index < self._first:
            return
        if not self._frames:
            self._offset = index
        canvas = _compress(frame.canvas)
        if frame.rig is None:  # no face yet: shown as it is
            self._frames.append(_Kept(canvas, None, None, (0, 0, self._w, self._h)))
            return
        if self._mask is None or frame.mask is not self._mask[0]:
            half = cv2.resize(frame.mask, (self._w // 2, self._h // 2), interpolation=cv2.INTER_AREA)
            self._mask = (frame.mask, _compress(np.clip(half * 255 + 0.5, 0, 255).astype(np.uint8)))
        self._frames.append(_Kept(canvas, frame.points, self._mask[1], frame.rig.person_box))

    def frame(self, index: int, previous: CharacterFrame | None) -> CharacterFrame:
        """Kept frame ``index`` again; ``previous``: the frame shown before it."""
        import cv2

        kept = self._frames[min(max(0, index - self._offset), len(self._frames) - 1)]
        canvas = cv2.imdecode(kept.canvas, cv2.IMREAD_COLOR)
        if kept.points is None or kept.mask is None:
            return _passthrough(canvas)
        if self._restored is None or kept.mask is not self._restored[0]:
            half = cv2.imdecode(kept.mask, cv2.IMREAD_GRAYSCALE)
            full = cv2.resize(half, (self._w, self._h), interpolation=cv2.INTER_LINEAR)
            self._restored = (kept.mask, full.astype(np.float32) * np.float32(1 / 255))
        like = None if previous is None else previous.rig
        return CharacterFrame(
            canvas=canvas,
            points=kept.points,
            rig=rig.Rig(kept.points, self._w, self._h, kept.box, like=like, picture=self._picture),
            mask=self._restored[1],
            background=canvas,
            base=canvas,
            shut_eyes=self._lids,
            eyeballs=eyeballs.Eyeballs(canvas, kept.points, quick=True),
        )


def _compress(image: np.ndarray) -> np.ndarray:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, REEL_QUALITY])
    if not ok:
        raise RuntimeError("JPEG compression failed")
    return data


def _passthrough(canvas: np.ndarray) -> CharacterFrame:
    return CharacterFrame(
        canvas=canvas,
        points=np.empty((0, 3), np.float32),
        rig=None,  # type: ignore[arg-type]
        mask=np.zeros(canvas.shape[:2], np.float32),
        background=canvas,
        base=canvas,
    )
