"""Faces too small for FaceMesh's own detector: found with the full-range detector and
followed in a zoomed crop."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from service.engine import assets, character, landmarks, video
from tests.engine import clips


def test_a_small_face_in_a_large_picture_is_found_again_at_full_size(
    media: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picture larger than the search size is searched reduced; a face small there has
    its landmarks found again in the full picture (shrunk by area into the crop)."""
    import cv2

    photo = assets.load_image(media / "character_photo.jpg")
    big = character.find_face(photo)
    assert big is not None
    frame = cv2.resize(clips.placed(photo, 300, (600, 300)), (2560, 1440), interpolation=cv2.INTER_CUBIC)
    again = []
    around = landmarks.FaceTracker.detect_around

    def counted(self: landmarks.FaceTracker, bgr: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        again.append(bgr.shape)
        return around(self, bgr, points)

    monkeypatch.setattr(landmarks.FaceTracker, "detect_around", counted)
    found = character.find_face(frame)  # face ~260 px here, ~130 px in the 1280 px search
    assert found is not None and again == [(1440, 2560, 3)]
    expected = (big[:, :2] * 300 / 512 + [600, 300]) * 2
    assert np.abs(found[:, :2] - expected).mean() < 2.0


def test_a_small_face_in_a_picture_is_found(media: pathlib.Path) -> None:
    photo = assets.load_image(media / "character_photo.jpg")  # 512 px, face ~220 px
    big = character.find_face(photo)
    assert big is not None
    frame = clips.placed(photo, 190, (700, 400))  # face ~80 px: FaceMesh alone finds nothing
    with landmarks.FaceTracker(video=False) as tracker:
        assert landmarks._mesh_points(tracker._mesh, frame) is None
    found = character.find_face(frame)
    assert found is not None
    expected = big[:, :2] * 190 / 512 + [700, 400]
    assert np.abs(found[:, :2] - expected).mean() < 1.0


@pytest.mark.parametrize("across", [True, False], ids=["wide", "tall"])
def test_a_face_as_tall_as_a_banner_is_found(media: pathlib.Path, across: bool) -> None:
    """In a 5:1 picture a face filling its short side is small to FaceMesh's detector,
    which sees the whole picture fitted into a square: it is zoomed in on, not refused
    as too large to be missed."""
    import cv2

    photo = assets.load_image(media / "character_photo.jpg")
    big = character.find_face(photo)
    assert big is not None
    banner = np.full((500, 2500, 3) if across else (2500, 500, 3), 150, np.uint8)
    at = (1025, 25) if across else (25, 1025)
    banner[at[1] : at[1] + 450, at[0] : at[0] + 450] = cv2.resize(
        photo, (450, 450), interpolation=cv2.INTER_AREA
    )
    found = character.find_face(banner)
    assert found is not None
    expected = big[:, :2] * 450 / 512 + at
    assert np.abs(found[:, :2] - expected).mean() < 2.0


def test_a_small_face_in_a_video_is_followed_as_it_moves(reference: pathlib.Path) -> None:
    frames = list(video.iter_frames(reference, 24, 48))  # 256 px, face ~115 px
    with landmarks.FaceTracker(video=True) as near, landmarks.FaceTracker(video=True) as far:
        for i, frame in enumerate(frames):
            at = (500 + 4 * i, 300)  # travelling right, face ~55 px wide
            seen, small = near.detect(frame), far.detect(clips.placed(frame, 120, at))
            assert seen is not None and small is not None, i
            expected = seen[:, :2] * 120 / 256 + at
            assert np.abs(small[:, :2] - expected).mean() < 1.5, i


def test_a_video_without_a_face_looks_for_a_small_one_only_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On every ``ZOOM_RETRY``-th frame, and in tiles on every ``TILE_RETRY``-th of those
    looks; a picture is looked at whole and in tiles every time."""
    looks: list[bool] = []

    def find(self: landmarks.FaceTracker, bgr: np.ndarray, tiled: bool) -> None:
        looks.append(tiled)

    monkeypatch.setattr(landmarks.FaceTracker, "_find_small_face", find)
    blank = np.full((360, 640, 3), 120, np.uint8)
    frames = 2 * landmarks.TILE_RETRY * landmarks.ZOOM_RETRY
    with landmarks.FaceTracker(video=True) as tracker:
        assert all(tracker.detect(blank) is None for _ in range(frames))
    whole = [False] * landmarks.TILE_RETRY
    assert looks == ([False, True] + whole[1:]) * 2
    looks.clear()
    with landmarks.FaceTracker(video=False) as tracker:  # a picture: always
        assert tracker.detect(blank) is None
        assert tracker.detect(blank) is None
    assert looks == [False, True] * 2


def test_a_face_the_detector_misses_in_the_whole_picture_is_found_in_tiles(
    media: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full-range detector's input is 192 px square: a face ~40 px wide in a 1280x720
    frame is ~6 px there, and 2.4 times as large in a tile 0.75 times the frame's height
    (the whole frame's look found it at some places in the frame, not at others)."""
    first = next(iter(video.iter_frames(media / "driving_short.mp4", 24, 1)))  # 480 px
    big = character.find_face(first)
    assert big is not None
    tiled: list[tuple[int, int]] = []
    tiles = landmarks._tiles

    def counted(width: int, height: int) -> list[tuple[int, int, int]]:
        tiled.append((width, height))
        return tiles(width, height)

    monkeypatch.setattr(landmarks, "_tiles", counted)
    found = character.find_face(clips.placed(first, 80, (600, 300)))
    assert found is not None and tiled == [(1280, 720)]
    expected = big[:, :2] * 80 / 480 + [600, 300]
    assert np.abs(found[:, :2] - expected).mean() < 1.0


def test_a_face_facemesh_finds_by_itself_wins_over_a_small_one_being_followed(
    reference: pathlib.Path,
) -> None:
    """Following a small face (someone in the background, while the performer was turned
    away), the tracker still looks at the whole frame now and then."""
    import cv2

    frames = list(video.iter_frames(reference, 24, 2 * landmarks.ZOOM_RETRY + 2))
    xs: list[float] = []
    with landmarks.FaceTracker(video=True) as tracker:
        for i, frame in enumerate(frames):
            picture = clips.placed(frame, 120, (60, 60))  # small, top left
            if i >= 2:  # the performer comes back, large, on the right
                picture[150:550, 700:1100] = cv2.resize(frame, (400, 400), interpolation=cv2.INTER_AREA)
            points = tracker.detect(picture)
            assert points is not None
            xs.append(float(points[:, 0].mean()))
    assert xs[0] < 200 and xs[1] < 200  # the small face, followed
    assert xs[-1] > 700  # the large face, by the end
