"""The clean plate's texture fill (``texture.fill``): the scene's own pixels, coherent."""

from __future__ import annotations

import numpy as np

from service.engine import texture


def _stripes(h: int, w: int) -> np.ndarray:
    """Diagonal bands, like a grassy slope's, in two colours."""
    yy, xx = np.mgrid[:h, :w]
    dark = ((xx + yy) // 12) % 2 == 0
    return np.where(dark[..., None], np.uint8([40, 90, 30]), np.uint8([90, 180, 80])).astype(np.uint8)


def _smooth(picture: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A smooth fill of the hole, as the clean plate starts the texture fill with."""
    import cv2

    return cv2.inpaint(picture, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)


def _hole(h: int, w: int) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[80:, 140:260] = True  # a person standing in the middle, cut by the bottom edge
    return hole


def test_the_fill_carries_the_scenes_bands_on_through_the_hole() -> None:
    """The hole is filled with the scene's own full-resolution pixels (its two colours,
    not a blur of them), laid out as the bands beside it run; the rest is untouched."""
    h, w = 240, 400
    scene = _stripes(h, w)
    picture = scene.copy()
    hole = _hole(h, w)
    picture[hole] = (200, 200, 200)  # the person
    out = texture.fill(picture, hole, _smooth(picture, hole))
    assert out is not None
    assert np.array_equal(out[~hole], picture[~hole])
    filled = out[hole].astype(int)
    colours = np.array([[40, 90, 30], [90, 180, 80]])
    exact = (np.abs(filled[:, None, :] - colours[None]).max(axis=2) <= 2).any(axis=1)
    assert exact.mean() > 0.7  # copied, not averaged
    assert (np.abs(filled - 200).max(axis=1) > 40).all()  # nothing of the person
    # The bands run on: the fill matches the scene that was there far better than chance.
    truth = scene[hole].astype(np.float32)[:, 1]
    assert np.corrcoef(truth, filled[:, 1])[0, 1] > 0.5


def test_the_same_picture_gets_the_same_fill() -> None:
    h, w = 200, 300
    rng = np.random.default_rng(4)
    picture = np.clip(_stripes(h, w).astype(int) + rng.integers(-20, 20, (h, w, 1)), 0, 255).astype(np.uint8)
    hole = _hole(h, w)
    first = texture.fill(picture, hole, _smooth(picture, hole))
    assert first is not None
    again = texture.fill(picture.copy(), hole.copy(), _smooth(picture, hole))
    assert again is not None and np.array_equal(first, again)


def test_a_hole_with_no_scene_to_match_is_left_to_the_smooth_fill() -> None:
    h, w = 120, 160
    picture = _stripes(h, w)
    hole = np.ones((h, w), bool)
    hole[:4] = False  # a strip too thin for any patch
    assert texture.fill(picture, hole, _smooth(picture, hole)) is None
    nothing = np.zeros((h, w), bool)
    out = texture.fill(picture, nothing, picture)
    assert out is not None and np.array_equal(out, picture)
