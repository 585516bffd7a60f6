"""Streaming decode: sampling every n-th output frame."""

from __future__ import annotations

import pathlib

import numpy as np

from service.engine import video


def test_stride_yields_every_nth_frame_of_the_full_stream(reference: pathlib.Path) -> None:
    count = 84  # 3.5 s at 24 fps
    every = list(video.iter_frames(reference, 24, count))
    sampled = list(video.iter_frames(reference, 24, count, stride=11))
    assert len(every) == count and len(sampled) == len(range(0, count, 11))
    for frame, expected in zip(sampled, every[::11], strict=True):
        np.testing.assert_array_equal(frame, expected)


def test_stride_holds_the_last_frame_past_a_short_stream(reference: pathlib.Path) -> None:
    # Ask for more frames than the clip has: the tail repeats its last frame.
    sampled = list(video.iter_frames(reference, 24, 120, stride=7))
    assert len(sampled) == len(range(0, 120, 7))
    np.testing.assert_array_equal(sampled[-1], sampled[-2])


def test_without_hold_the_frames_stop_where_the_stream_ends(reference: pathlib.Path) -> None:
    frames = list(video.iter_frames(reference, 24, 120, hold=False))
    assert len(frames) == 84  # 3.5 s at 24 fps
    np.testing.assert_array_equal(frames[-1], list(video.iter_frames(reference, 24, 84))[-1])
