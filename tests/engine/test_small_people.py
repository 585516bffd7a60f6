"""A person small in the picture: segmented and cleaned from the background at their
own scale, not the picture's."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from service.engine import assets, character, composite, segmentation
from tests.engine import clips

#: Where the photo (512 px) is placed, and how large: a face about 60 px wide.
AT, SIDE = (900, 300), 150


def _on_frame(x: float, y: float) -> tuple[int, int]:
    """A point of the 512 px photo, as (row, column) of the placed one."""
    s = SIDE / 512
    return int(AT[1] + y * s), int(AT[0] + x * s)


@pytest.fixture(scope="module")
def photo(media: pathlib.Path) -> np.ndarray:
    return assets.load_image(media / "character_photo.jpg")


def test_a_small_persons_mask_is_segmented_around_their_face(photo: np.ndarray) -> None:
    """The whole picture, seen at 256 x 144, barely shows a 60 px face's person; a crop
    around the face shows their head and shoulders, and not the scene beside them."""
    frame = clips.placed(photo, SIDE, AT)
    face = character.find_face(frame)
    assert face is not None and 50 < np.ptp(face[:, 0]) < 70
    with segmentation.Segmenter() as seg:
        whole, near = seg.mask(frame), seg.mask(frame, face)
    head, neck = _on_frame(256, 250), _on_frame(256, 460)
    assert whole[head] < 0.5  # the model alone, on the whole picture, misses them
    assert near[head] > 0.9 and near[neck] > 0.9
    for x, y in [(60, 60), (40, 250)]:  # the foliage beside the head, in the photo
        assert near[_on_frame(x, y)] < 0.1


def test_only_the_small_persons_column_is_segmented(photo: np.ndarray) -> None:
    """Beside and above the crop there is no person: another figure in the picture is
    not taken into the mask (it would be moved with the torso, and filled in the plate)."""
    import cv2

    frame = clips.placed(photo, SIDE, AT)
    face = character.find_face(frame)
    assert face is not None
    frame[100:600, 50:550] = cv2.resize(photo, (500, 500), interpolation=cv2.INTER_AREA)
    with segmentation.Segmenter() as seg:
        whole, near = seg.mask(frame), seg.mask(frame, face)
    assert whole[350, 300] > 0.3  # the large figure, to the whole picture's model
    x0, y0, x1, _ = segmentation._person_crop(face, 1280, 720)  # type: ignore[misc]
    assert not near[:, :x0].any() and not near[:, x1:].any() and not near[:y0].any()
    assert near[_on_frame(256, 460)] > 0.9


def test_a_large_faces_mask_is_the_whole_pictures(photo: np.ndarray) -> None:
    """A face a sixth of the picture wide or more is segmented with the whole picture, as
    before (renders of such characters are unchanged)."""
    import cv2

    frame = cv2.resize(photo, (720, 720), interpolation=cv2.INTER_CUBIC)
    face = character.find_face(frame)
    assert face is not None and np.ptp(face[:, 0]) * segmentation.SEG_CROP * segmentation.SEG_ZOOM > 720
    assert segmentation._person_crop(face, 720, 720) is None
    with segmentation.Segmenter() as seg:
        assert np.array_equal(seg.mask(frame, face), seg.mask(frame))


def test_the_plate_is_filled_at_the_persons_scale() -> None:
    """A quarter-size fill of a small person reaches far past them in blocks a third of
    their face's size; at their own scale the fill hugs them."""
    assert [composite.plate_factor(w) for w in (20, 60, 100, 127, 128, 300)] == [1, 1, 3, 3, 4, 4]
    rng = np.random.default_rng(3)
    h, w = 240, 320
    picture = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    person = (np.hypot(xx - 160, yy - 120) <= 30).astype(np.float32)
    reach = {}
    for factor in (1, 4):
        _, area = composite.clean_plate(picture, person, factor=factor)
        filled = np.hypot(xx - 160, yy - 120)[area > 0.5]
        reach[factor] = filled.max() - 30
    assert reach[1] <= 6 and reach[4] >= 12


def test_a_small_persons_plate_keeps_the_scene_beside_them(photo: np.ndarray, tmp_path: pathlib.Path) -> None:
    """A still character small in the picture: the plate is filled only around the person
    (not over the whole photo they stand in), and the torso's region is theirs alone."""
    import cv2

    path = tmp_path / "small.png"
    cv2.imwrite(str(path), clips.placed(photo, SIDE, AT))
    frame = character.StillCharacter(path, 1280, 720).frame
    assert frame.plate_area is not None
    for x, y in [(60, 60), (40, 250)]:  # the foliage beside the head
        assert frame.plate_area[_on_frame(x, y)] == 0.0
    assert frame.plate_area[_on_frame(256, 460)] == 1.0  # the neck
    x0, y0, x1, y1 = frame.rig.person_box
    assert AT[0] - 20 <= x0 and x1 <= AT[0] + SIDE + 20 and y0 >= AT[1] - 20


def test_a_small_person_in_a_character_video_is_segmented_around_their_face(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Each analysed frame of a video character segments a small person around their
    face too: the whole frame's model, which sees her face 12 px wide, leaves her neck and
    shoulders out (they would stay behind as the head and torso move)."""
    import itertools

    def small(picture: np.ndarray) -> np.ndarray:
        import cv2

        frame = np.full((720, 1280, *picture.shape[2:]), 190, picture.dtype)
        frame[380:560, 700:1020] = cv2.resize(picture, (320, 180), interpolation=cv2.INTER_AREA)
        return frame

    clip = clips.cut(
        media / "character_video.mp4", tmp_path / "small.mp4", 0.0, 0.5, audio=False, store=small
    )
    for cf in itertools.islice(character.VideoCharacter(clip, 1280, 720, 6, 24).frames(), 6):
        width = np.ptp(cf.points[:, 0])
        assert 45 < width < 75
        cx, top, chin = cf.points[:, 0].mean(), cf.points[:, 1].min(), cf.points[:, 1].max()
        assert cf.mask[int(chin + 0.3 * width), int(cx)] > 0.9  # her neck
        for side in (-1.6, 1.6):  # the room beside her head
            assert cf.mask[int(top), int(cx + side * width)] < 0.1
