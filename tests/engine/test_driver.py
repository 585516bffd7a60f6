"""The performer's side: what the character is driven with where the performer's face
is lost (turned away, out of shot, behind a hand)."""

from __future__ import annotations

import pathlib

import numpy as np

from service.engine import driver

from . import clips

FPS = 24


def test_a_face_lost_for_long_eases_to_the_performers_rest_and_back() -> None:
    """Held for good, a performer who walked out of shot left the character frozen
    mid-word until they came back, then snapped to their new expression in one frame."""
    rest, seen = np.zeros((478, 3)), np.ones((478, 3))
    settle = driver.Settle(rest, FPS)
    tracked = [True] * 5 + [False] * 40 + [True] * 10
    toward_rest = [1.0 - float(settle(driver.DriverSample(seen, None, tracked=t))[0, 0]) for t in tracked]
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
