"""The performer's side: what the character is driven with where the performer's face
is lost (turned away, out of shot, behind a hand), shown slower than the output rate, or
upside down."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import numpy as np
import pytest

from service.engine import driver, retarget, topology

from . import clips

FPS = 24


def _weights(tracked: list[bool]) -> list[float]:
    """``driver.Settle``'s weights toward the rest over samples tracked or not."""
    settle = driver.Settle(FPS)
    return [settle(driver.DriverSample(np.zeros((478, 3)), None, tracked=t)) for t in tracked]


def test_a_face_lost_for_long_eases_to_the_performers_rest_and_back() -> None:
    """Held for good, a performer who walked out of shot left the character frozen
    mid-word until they came back, then snapped to their new expression in one frame."""
    toward_rest = _weights([True] * 5 + [False] * 40 + [True] * 10)
    hold, out, back = (
        round(driver.LOST_HOLD_S * FPS),
        round(driver.LOST_EASE_S * FPS),
        round(driver.FOUND_EASE_S * FPS),
    )
    assert toward_rest[: 5 + hold] == [0.0] * (5 + hold)  # tracked, then held as last seen
    easing = toward_rest[5 + hold : 5 + hold + out]
    assert 0 < easing[0] < 0.1 and easing[-1] == 1.0
    steps = np.diff(easing)
    assert (steps > 0).all() and steps.max() < 0.2  # smoothly, never a jump
    assert toward_rest[5 + hold + out : 45] == [1.0] * (45 - 5 - hold - out)  # at rest while lost
    returning = toward_rest[45:]
    assert 0 < returning[0] < 1 and returning[back - 1] == 0.0 and returning[-1] == 0.0
    assert (np.diff(returning[:back]) < 0).all()


def test_a_clip_opening_without_the_face_opens_at_rest() -> None:
    """It held the first expression found (a pout, a sideways look) until the face showed."""
    toward_rest = _weights([False] * 30 + [True] * 10)
    back = round(driver.FOUND_EASE_S * FPS)
    assert toward_rest[:30] == [1.0] * 30
    assert (np.diff(toward_rest[29 : 30 + back]) < 0).all() and toward_rest[30 + back - 1] == 0.0


def test_at_rest_a_driver_frame_is_the_usual_pose_and_the_neutral_face() -> None:
    frame = retarget.DriverFrame(
        scale=1.1,
        angles=(10.0, -20.0, 5.0),
        centre_shift=np.array([0.2, -0.1]),
        expression=np.ones((478, 3)),
        eyes=(0.3, 1.4),
        gaze=np.ones((2, 2)),
    )
    assert frame.toward_rest(0.0) is frame
    rest = frame.toward_rest(1.0)
    assert rest.scale == 1.0 and rest.angles == (0.0, 0.0, 0.0) and rest.eyes == (1.0, 1.0)
    assert not rest.centre_shift.any() and not rest.expression.any() and not rest.gaze.any()
    half = frame.toward_rest(0.5)
    assert half.scale == pytest.approx(1.05) and half.eyes == pytest.approx((0.65, 1.2))


def test_where_the_face_is_lost_the_mouth_is_taken_from_the_last_frame_it_was_found_on(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The held landmarks belong to the last frame the face was on: the mouth interior
    taken from the current frame at them painted the empty room into the mouth."""
    face = clips.cut(media / "driving_talking_portrait.mp4", tmp_path / "face.mp4", 1.0, 2.0, size=(360, 640))
    faces = list(clips.frames(face))
    blank = np.full_like(faces[0], 90)
    clip = clips.encode(tmp_path / "leaves.mp4", faces[:36] + [blank] * 24 + faces[36:48], (360, 640), FPS)
    samples = list(driver.stream(clip, FPS, 72))
    assert len(samples) == 72
    assert all(s.tracked for s in samples[:30])
    last = max(i for i in range(37) if samples[i].tracked)
    away = samples[37:60]
    assert not any(s.tracked for s in away)
    assert all(s.frame is samples[last].frame for s in away)  # the last frame with the face
    assert float(samples[last].frame.std()) > 20
    assert samples[-1].tracked and samples[-1].frame is not None and float(samples[-1].frame.std()) > 20


def test_a_face_whose_eyes_or_mouth_are_past_the_frames_edge_counts_as_lost() -> None:
    """FaceMesh guesses a face's parts past the edge: a mouth cut by the bottom edge read
    wide open (its interior painted from the edge's smeared rows), an eye past the left
    edge read as a turn of the head. A little past the edge is let pass."""
    frame = np.zeros((400, 300, 3), np.uint8)
    points = np.zeros((478, 3))
    points[:, 0] = np.linspace(50, 250, 478)  # a face 200 px wide
    points[:, 1] = 200.0
    assert driver.in_frame(points, frame) is points
    assert driver.in_frame(None, frame) is None
    for axis, past in ((1, 400 + 20), (0, -20), (0, 300 + 20)):  # 10 % of its width out
        cut = points.copy()
        cut[topology.INNER_LIPS[3], axis] = past
        assert driver.in_frame(cut, frame) is None
    chin_out = points.copy()
    chin_out[~np.isin(np.arange(478), driver.IN_FRAME), 1] = 400 + 20  # all but eyes and lips
    assert driver.in_frame(chin_out, frame) is chin_out
    nearly = points.copy()
    nearly[topology.INNER_LIPS, 1] = 399 + 5  # 2.5 % past the bottom edge
    assert driver.in_frame(nearly, frame) is nearly


def _step_ratio(samples: list[driver.DriverSample]) -> float:
    """How much more the lips move from one output frame to the next on odd frames than
    on even ones, or the other way round (1: evenly; a frame held twice: large)."""
    lips = np.array([s.points[topology.INNER_LIPS, :2] for s in samples])
    steps = np.linalg.norm(np.diff(lips, axis=0), axis=2).mean(axis=1)
    even, odd = float(steps[0::2].mean()), float(steps[1::2].mean())
    return max(even, odd) / min(even, odd)


def test_a_reference_slower_than_the_output_rate_moves_the_character_smoothly(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A 12 fps clip shows each frame at two output instants: held, the character moved
    every other frame, at 12 Hz (the lips' steps were 2.8 times larger on one half of
    the frames than on the other); the face is blended toward the next frame's."""
    face = clips.cut(media / "driving_talking_portrait.mp4", tmp_path / "face.mp4", 1.0, 2.4, size=(360, 640))
    slow = clips.encode(tmp_path / "slow.mp4", list(clips.frames(face))[::2], (360, 640), 12)
    samples = list(driver.stream(slow, FPS, 72, body=False))
    assert len(samples) == 72 and all(s.tracked for s in samples)
    assert _step_ratio(samples) < 1.4
    # the mouth is taken from the frame on screen: each source frame serves two samples
    assert all(samples[i].frame is samples[i + 1].frame for i in range(0, 72, 2))


def test_faces_between_slow_frames_are_blended_toward_the_next_frames() -> None:
    """Each source frame is looked at once; at the output instants between two frames
    shown for longer than an output frame, the face is the first one's moved toward
    the second's by the time gone. Not toward a frame with no face, nor across a cut,
    nor where the picture stands still (longer than ``BLEND_MAX_S``), nor for a source
    at the output rate or faster."""
    frames = [np.zeros((2, 2, 3), np.uint8) + k for k in range(4)]
    faces = [np.full((478, 3), 100.0) + np.arange(478)[:, None] for _ in range(4)]
    faces[1] = faces[1] + 10.0  # moves 10 px
    faces[2] = None  # lost
    looked: list[int] = []

    def detect(frame: np.ndarray) -> np.ndarray | None:
        looked.append(int(frame[0, 0, 0]))
        return faces[int(frame[0, 0, 0])]

    # 12 fps: frames 0 and 1 at two instants each, frame 2 at two, frame 3 held 0.5 s
    timed = [(frames[k], k / 12, (k + 1) / 12) for k in (0, 0, 1, 1, 2, 2)]
    timed += [(frames[3], 3 / 12, 3 / 12 + 0.5)] * 3
    out = list(driver._detections(timed, FPS, detect))
    assert looked == [0, 1, 2, 3]
    assert [int(f[0, 0, 0]) for f, _ in out] == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    got = [None if p is None else float(p[0, 0]) for _, p in out]
    assert got[:2] == pytest.approx([100.0, 105.0])  # halfway toward frame 1's
    assert got[2:4] == [110.0, 110.0]  # frame 2 has no face: held
    assert got[4:6] == [None, None]
    assert got[6:] == [100.0] * 3  # shown for 0.5 s: held
    # a cut: no blending
    faces[1] = faces[0] + 500.0
    out = list(driver._detections(timed[:4], FPS, detect))
    assert [float(p[0, 0]) for _, p in out] == [100.0, 100.0, 600.0, 600.0]
    # 30 fps (each frame on screen for less than an output frame): as found
    faces[1] = faces[0] + 10.0
    fast = [(frames[k], k / 30, (k + 1) / 30) for k in (0, 1)]
    assert [float(p[0, 0]) for _, p in driver._detections(fast, FPS, detect)] == [100.0, 110.0]


@pytest.mark.parametrize(
    ("store", "mirrored"),
    [(lambda img: img[::-1, ::-1], False), (lambda img: img[::-1], True)],
    ids=["turned", "flipped"],
)
def test_a_performer_upside_down_is_tracked_in_frames_turned_upright(
    reference: pathlib.Path, tmp_path: pathlib.Path, store: Callable[[np.ndarray], np.ndarray], mirrored: bool
) -> None:
    """FaceMesh fitted an upright mesh to a face upside down (eyes on its mouth), and the
    character's face was wrecked in every frame. The two judges score such a face lower
    than the same frame turned half round: the clip is tracked turned, as the upright
    one is (a clip flipped top to bottom: as its mirror image)."""
    upside_down = clips.cut(reference, tmp_path / "upside_down.mp4", 0.0, 1.5, audio=False, store=store)
    upright = driver.rest_pose(reference, FPS, 36)
    found = driver.rest_pose(upside_down, FPS, 36)
    assert upright is not None and found is not None
    assert not upright.turned and found.turned
    across = 255 - found.points[:, 0] if mirrored else found.points[:, 0]
    assert np.abs(np.sort(across) - np.sort(upright.points[:, 0])).mean() < 4.0  # the same face's span
    assert abs(float(np.mean(found.points[:, 1]) - np.mean(upright.points[:, 1]))) < 4.0
    eyes = found.points[topology.RIGHT_EYE.ring, 1].mean()
    assert eyes < found.points[topology.INNER_LIPS, 1].mean() - 40  # eyes above the mouth
    samples = list(driver.stream(upside_down, FPS, 36, body=False, turned=found.turned))
    along = list(driver.stream(reference, FPS, 36, body=False))
    assert all(s.tracked for s in samples)
    gaps = [s.points[topology.INNER_LIPS, 1].ptp() for s in samples]
    usual = [s.points[topology.INNER_LIPS, 1].ptp() for s in along]
    assert np.corrcoef(gaps, usual)[0, 1] > 0.9  # the mouth opens and shuts with the clip's


def test_an_upright_performer_is_not_looked_at_turned_once_surely_upright(
    reference: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which way is up costs the upright clips little: a frame is looked at turned half
    round only where the face as shown is not surely upright, and only until it is
    decided (``ORIENT_VOTES`` sampled frames with a face)."""
    from service.engine import landmarks

    looked: list[np.ndarray] = []  # the frames a face was looked for on
    detect = landmarks.FaceTracker.detect

    def counted(self: landmarks.FaceTracker, bgr: np.ndarray) -> np.ndarray | None:
        looked.append(bgr)
        return detect(self, bgr)

    judged: list[float] = []
    judges = landmarks.FaceTracker.judges

    def noted(self: landmarks.FaceTracker, bgr: np.ndarray, points: np.ndarray) -> tuple[float, float]:
        scores = judges(self, bgr, points)
        judged.append(sum(scores))
        return scores

    monkeypatch.setattr(landmarks.FaceTracker, "detect", counted)
    monkeypatch.setattr(landmarks.FaceTracker, "judges", noted)
    rest = driver.rest_pose(reference, FPS, 84)
    assert rest is not None and not rest.turned
    assert len(judged) == driver.ORIENT_VOTES and min(judged) >= driver.UPRIGHT_SURE
    assert len(looked) == len(range(0, 84, 84 // driver.REST_SAMPLES))  # one detection a sample


def test_a_performer_tilted_throughout_drives_the_character_tilted(
    reference: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The tilt is transferred as a change from the performer's usual one, which is
    their habit (or the camera's) only within ``USUAL_TILT`` of level: a performer
    tilted 30 degrees through the whole clip had it as their usual, and the character
    stood upright through it."""
    import cv2

    def tilted(img: np.ndarray) -> np.ndarray:
        turn = cv2.getRotationMatrix2D((128.0, 140.0), -30.0, 1.0)  # 30 degrees clockwise
        return cv2.warpAffine(np.ascontiguousarray(img), turn, (256, 256), borderMode=cv2.BORDER_REPLICATE)

    clip = clips.cut(reference, tmp_path / "tilted.mp4", 0.0, 1.5, audio=False, store=tilted)
    level = driver.rest_pose(reference, FPS, 36)
    rest = driver.rest_pose(clip, FPS, 36)
    assert level is not None and rest is not None
    usual = retarget.eye_line(level.points) + level.pose.roll
    assert abs(usual) < driver.USUAL_TILT  # the upright clip's own usual tilt: kept as it is
    assert retarget.eye_line(rest.points) + rest.pose.roll == pytest.approx(driver.USUAL_TILT)
    model = retarget.DriverModel(rest.points, rest.eyes, rest.pose)
    sample = next(driver.stream(clip, FPS, 1, body=False))
    assert model.decompose(sample.points).angles[0] == pytest.approx(30.0 - driver.USUAL_TILT, abs=3.0)


def test_a_hand_over_the_face_counts_as_the_face_lost(
    reference: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """FaceMesh goes on giving landmarks under a hand, guessed: the character's lips
    stretched and an eye stared. The face flag, asked every ``COVER_EVERY`` frames,
    falls under the hand: those frames count as the face lost (held, eased to rest)."""
    import cv2

    faces = list(clips.frames(reference))[:72]  # 30 fps, 256x256
    for face in faces[24:60]:  # a hand (a flat skin-coloured oval) over the face for 1.2 s
        cv2.ellipse(face, (128, 150), (85, 110), 0, 0, 360, (120, 150, 200), -1)
    clip = clips.encode(tmp_path / "hand.mp4", faces, (256, 256), 30)
    samples = list(driver.stream(clip, FPS, 57, body=False))
    tracked = [s.tracked for s in samples]
    assert all(tracked[:19]) and all(tracked[-6:])  # before the hand and after it
    under = tracked[20:48]  # output frames 20-47 show source frames 25-59
    assert not any(under[driver.COVER_EVERY :])  # lost from the first check under the hand on
    assert all(s.tracked for s in driver.stream(reference, FPS, 57, body=False))  # without the hand
