"""The performer's side: what the character is driven with where the performer's face
is lost (turned away, out of shot, behind a hand)."""

from __future__ import annotations

import pathlib

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
