"""Drawn eyes larger than FaceMesh's eye contour: the contour is fitted to the drawing."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from service.engine import character, eyefit, framing, retarget, rig, topology

EYES = topology.EYES


def _framed(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """A picture framed at 1280x720 and its face landmarks, as a still character has them."""
    image = character.load_image(path)
    found = character.find_face(image)
    assert found is not None
    fr = framing.choose(image.shape[1], image.shape[0], found, 1280, 720)
    return framing.render(image, fr), fr.to_canvas(found)


@pytest.fixture(scope="module")
def photo(media: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    return _framed(media / "character_photo.jpg")


def _paint_drawn_eyes(canvas: np.ndarray, points: np.ndarray, scale: tuple[float, float]) -> list[np.ndarray]:
    """Paint over each eye a cartoon eye ``scale`` (x, y) times its contour: white, a blue
    iris, a dark outline on skin. Returns each painted outline (the contour, scaled)."""
    import cv2

    outlines = []
    for ring, *_ in EYES:
        contour = points[ring, :2].astype(np.float64)
        centre = contour.mean(axis=0)
        outline = centre + (contour - centre) * np.array(scale)
        cv2.fillPoly(canvas, [np.round(outline).astype(np.int32)], (235, 235, 240), cv2.LINE_AA)
        radius = int(0.45 * np.ptp(outline[:, 1]))
        cv2.circle(canvas, tuple(np.round(centre).astype(int)), radius, (170, 110, 60), -1, cv2.LINE_AA)
        cv2.polylines(canvas, [np.round(outline).astype(np.int32)], True, (40, 40, 70), 3, cv2.LINE_AA)
        outlines.append(outline)
    return outlines


def test_real_eyes_are_left_as_they_are(photo: tuple[np.ndarray, np.ndarray]) -> None:
    canvas, points = photo
    assert eyefit.contour_moves(canvas, points) == {}
    assert np.array_equal(eyefit.fit_drawn_eyes(canvas, points), points)


def test_a_drawn_eye_larger_than_the_contour_gets_its_contour_on_the_drawing(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    canvas, points = photo[0].copy(), photo[1]
    outlines = _paint_drawn_eyes(canvas, points, (1.25, 1.8))
    fitted = eyefit.fit_drawn_eyes(canvas, points)
    for (ring, upper, lower, corners, _), outline in zip(EYES, outlines, strict=True):
        width = float(np.linalg.norm(points[corners[0], :2] - points[corners[1], :2]))
        # The lower lid lands on the drawn line (within 5 % of the eye's width)...
        before = np.abs(points[lower, 1] - outline[np.isin(ring, lower), 1]).mean()
        after = np.abs(fitted[lower, 1] - outline[np.isin(ring, lower), 1]).mean()
        assert after < min(0.05 * width, before / 2)
        # ...and the eye, opened by the fit, is larger on both lids and at both corners.
        assert (fitted[lower, 1] > points[lower, 1]).all()
        assert fitted[upper, 1].mean() < points[upper, 1].mean()
        fitted_width = np.linalg.norm(fitted[corners[0], :2] - fitted[corners[1], :2])
        assert fitted_width > width * 1.1
    # The mesh around the eyes followed without folding: no face triangle flipped.
    tri = topology.face_triangles()

    def areas(p: np.ndarray) -> np.ndarray:
        return rig._signed_areas(p.astype(np.float64)[tri, :2])

    assert (np.sign(areas(fitted)) == np.sign(areas(points))).all()
    # Away from the eyes nothing moved.
    far = np.linalg.norm(points[:468, :2] - points[topology.STABLE[4], :2], axis=1) > 3 * width
    assert np.array_equal(fitted[:468][far], points[:468][far])


def test_the_shared_cartoons_eyes_are_fitted_and_then_close_fully(media: pathlib.Path) -> None:
    canvas, points = _framed(media / "character_cartoon.jpg")
    fitted = eyefit.fit_drawn_eyes(canvas, points)
    for _, upper, lower, corners, _ in EYES:
        width = float(np.linalg.norm(points[corners[0], :2] - points[corners[1], :2]))
        opening = np.linalg.norm(points[upper, :2] - points[lower, :2], axis=1).mean()
        fitted_opening = np.linalg.norm(fitted[upper, :2] - fitted[lower, :2], axis=1).mean()
        assert fitted_opening > opening + 0.08 * width
    # The character shuts the whole fitted eye on a blink.
    model = retarget.DriverModel(points)
    shut = retarget.DriverFrame(
        scale=1.0,
        angles=(0.0, 0.0, 0.0),
        centre_shift=np.zeros(2),
        expression=np.zeros((478, 3)),
        eyes=(0.0, 0.0),
        gaze=np.zeros((2, 2)),
    )
    target = retarget.Retargeter(model, intensity=3, body_control=True).target(fitted, shut)
    for _, upper, lower, _, _ in EYES:
        gap = np.linalg.norm(target.points[upper, :2] - target.points[lower, :2], axis=1)
        assert gap.max() < 1.0


def test_a_still_character_uses_the_fitted_eyes(media: pathlib.Path) -> None:
    still = character.StillCharacter(media / "character_cartoon.jpg", 1280, 720)
    _, found = _framed(media / "character_cartoon.jpg")
    assert not np.allclose(still.frame.points, found)
    assert np.allclose(still.frame.rig.source[:, :2], still.frame.points[:, :2])


def test_dark_make_up_under_a_real_eye_leaves_its_upper_lid_alone(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    """Light skin then a dark line just under a real eye (make-up) passes for a drawn
    lid; the upper lid, whose contour already lies on the lashes (no white between), is
    not moved."""
    import cv2

    canvas, points = photo[0].copy(), photo[1]
    for _, _, lower, corners, _ in EYES:
        width = float(np.linalg.norm(points[corners[0], :2] - points[corners[1], :2]))
        line = points[lower, :2] + [0.0, 0.08 * width]
        cheek = np.round(points[lower, :2].mean(axis=0) + [0.0, 0.4 * width]).astype(int)
        skin = canvas[cheek[1], cheek[0]].tolist()
        band = np.vstack([points[lower, :2], line[::-1]])
        cv2.fillPoly(canvas, [np.round(band).astype(np.int32)], skin, cv2.LINE_AA)
        cv2.polylines(canvas, [np.round(line).astype(np.int32)], False, (30, 30, 40), 3, cv2.LINE_AA)
    moves = eyefit.contour_moves(canvas, points)
    fitted = eyefit.fit_drawn_eyes(canvas, points)
    for _, upper, lower, _, _ in EYES:
        assert all(int(i) in moves for i in lower)  # taken for a drawn lid...
        assert np.abs(fitted[upper, 1] - points[upper, 1]).max() < 0.5  # ...the upper lid stays
