"""Drawn eyes larger than FaceMesh's eye contour: the contour is fitted to the drawing,
and a drawn eye is drawn shut as it closes; a real eye's stretched lid is lifted out of
the shadow as it shuts, and its lashes hang below the lid once it is shut."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest

from service.engine import assets, character, eyefit, framing, lids, retarget, topology, warp

EYES = topology.EYES


def _framed(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """A picture framed at 1280x720 and its face landmarks, as a still character has them."""
    image = assets.load_image(path)
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
        return warp.signed_areas(p.astype(np.float64)[tri, :2])

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


def _white(image: np.ndarray) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    return (hsv[..., 2] > 170) & (hsv[..., 1] < 60)


def _closed(points: np.ndarray, eye: topology.Eye) -> np.ndarray:
    """``points`` with ``eye``'s lids shut on the line the retargeter closes them to."""
    out = points.copy()
    mid = points[eye.lower] + retarget.EYE_CLOSE_POINT * (points[eye.upper] - points[eye.lower])
    out[eye.upper], out[eye.lower] = mid, mid
    return out


def test_a_drawn_eye_is_drawn_shut(media: pathlib.Path) -> None:
    """The shared cartoon's eyes, shut, show skin with the drawing's dark lashes along the
    closed lid, not the eye's white and iris; an eye still open is left untouched."""
    import cv2

    frame = character.StillCharacter(media / "character_cartoon.jpg", 1280, 720).frame
    shut_eyes = frame.shut_eyes
    assert shut_eyes is not None
    canvas, points = frame.canvas, frame.points
    right = EYES[0]
    target = _closed(points, right)
    out = canvas.copy()
    shut_eyes.paint(out, target)
    opening = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillPoly(opening, [np.round(points[right.ring, :2]).astype(np.int32)], (255,))
    inside = opening > 0
    grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(int)
    skin = grey[
        np.round(points[topology.CHEEKS, 1]).astype(int), np.round(points[topology.CHEEKS, 0]).astype(int)
    ]
    # No white or blue left where the eye was open: every pixel is skin-like or lash-dark.
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
    blue = cv2.cvtColor(canvas, cv2.COLOR_BGR2HSV)[..., 0][inside] > 90  # (OpenCV hue: 100-120)
    assert (hsv[..., 0][inside] > 90).mean() < 0.02 < 0.2 < blue.mean()  # iris before
    assert _white(out)[inside].mean() < 0.02 < 0.2 < _white(canvas)[inside].mean()  # white before
    # The lashes: a dark stroke along the closed lid.
    lid = np.round(target[right.upper, :2] + [0.0, -1.0]).astype(int)
    assert grey[lid[:, 1], lid[:, 0]].mean() < 0.6 * np.median(skin)
    # The other eye is open: untouched; and an eye barely narrowed is left to the warp.
    away = np.ones(canvas.shape[:2], bool)
    x0, y0 = points[topology.eye_surround(0), :2].min(axis=0).astype(int) - 40
    x1, y1 = points[topology.eye_surround(0), :2].max(axis=0).astype(int) + 40
    away[y0:y1, x0:x1] = False
    assert np.array_equal(out[away], canvas[away])
    barely = points.copy()
    barely[right.upper] = points[right.lower] + 0.9 * (points[right.upper] - points[right.lower])
    same = canvas.copy()
    shut_eyes.paint(same, barely)
    assert np.array_equal(same, canvas)
    # Half shut: the lashes are drawn along the lowered lid, and the eye below it still
    # shows its iris and white.
    half = points.copy()
    half[right.upper] = points[right.lower] + 0.5 * (points[right.upper] - points[right.lower])
    lidded = canvas.copy()
    shut_eyes.paint(lidded, half)
    lid = np.round(half[right.upper, :2] + [0.0, -1.0]).astype(int)
    grey = cv2.cvtColor(lidded, cv2.COLOR_BGR2GRAY).astype(int)
    assert grey[lid[:, 1], lid[:, 0]].mean() < 0.6 * np.median(skin)
    below = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillPoly(
        below,
        [np.round(np.vstack([half[right.upper, :2], half[right.lower[::-1], :2]])).astype(np.int32)],
        (255,),
    )
    inner = cv2.erode(below, np.ones((13, 13), np.uint8)) > 0  # (clear of the lash stroke)
    np.testing.assert_array_equal(lidded[inner], canvas[inner])  # the open part: as it was


def test_a_cartoon_video_has_its_drawn_eyes_fitted_on_every_frame_and_drawn_shut(
    media: pathlib.Path, tmp_path: pathlib.Path, short_character_video: pathlib.Path
) -> None:
    """A character video with drawn eyes gets the still's treatment: the fit found on its
    first face is carried to every frame, and its eyes are drawn shut as they close. A
    video of a real person gets neither: its lids are those of real eyes."""
    import itertools

    import cv2

    from service.engine import landmarks
    from tests.engine import clips

    clip = clips.panned(media / "character_cartoon.jpg", tmp_path / "cartoon.mp4", 1.0)
    frames = list(itertools.islice(character.VideoCharacter(clip, 640, 360, 24, 24).frames(), 24))
    assert all(f.rig is not None and f.shut_eyes is not None for f in frames)
    assert all(f.shut_eyes is frames[0].shut_eyes for f in frames)
    with landmarks.FaceTracker(video=False) as tracker:
        for frame in (frames[0], frames[-1]):
            found = tracker.detect(frame.canvas)
            assert found is not None
            for fitted, raw in zip(
                retarget.eye_openness(frame.points), retarget.eye_openness(found), strict=True
            ):
                assert fitted > raw + 0.03  # the contour is out on the drawing, as on the still
    last = frames[-1]
    right = EYES[0]
    out = last.canvas.copy()
    assert last.shut_eyes is not None
    last.shut_eyes.paint(out, _closed(last.points, right), last.points)
    inside = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(last.points[right.ring, :2]).astype(np.int32)], (255,))
    assert _white(out)[inside > 0].mean() < 0.05 < 0.2 < _white(last.canvas)[inside > 0].mean()
    real = itertools.islice(character.VideoCharacter(short_character_video, 640, 360, 6, 24).frames(), 6)
    shut_eyes = [f.shut_eyes for f in real]
    assert shut_eyes[0] is not None and all(lid is shut_eyes[0] for lid in shut_eyes)
    assert not any(lid.drawn for lid in shut_eyes[0].eyes)


def _lid_sheet(points: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """The outline of what covers eye ``k`` shut to ``target``: from the ring just beyond
    the eye, above it, down to the shut lid."""
    eye = EYES[k]
    ring = topology.eye_surround(k)
    centre = points[eye.ring, :2].mean(axis=0)
    upper = ring[points[ring, 1] < centre[1]]
    upper = upper[np.argsort(points[upper, 0])]
    lid = target[[eye.corners[0], *eye.upper, eye.corners[1]], :2]
    lid = lid[np.argsort(lid[:, 0])]
    return np.vstack([points[upper, :2], lid[::-1]])


def test_a_real_eyes_stretched_lid_is_lifted_out_of_the_shadow_as_it_shuts(
    photo: tuple[np.ndarray, np.ndarray], media: pathlib.Path
) -> None:
    """A real eye shut by the warp shows its lid band stretched over it. Where that band
    is dark (a hooded eye's lash line and crease shadow: a brown smear), the shut lid is
    lifted toward the skin's light, keeping a dark lash line along the lid; where it is
    skin with lashes on it, it is left as it is; an open eye is untouched."""
    import cv2

    still = character.StillCharacter(media / "character_photo.jpg", 1280, 720).frame.shut_eyes
    assert still is not None and not any(lid.drawn for lid in still.eyes)  # the still has them
    canvas, points = photo
    right = EYES[0]
    # A hooded eye: its upper lid near the ring beyond it, so the band between is thin
    # (the photo's own band is tall: shut, it is stretched to under twice its height).
    hooded = points.copy()
    hooded[right.upper] = points[right.upper] + 0.6 * (points[right.upper] - points[right.lower])
    shut_eyes = lids.ShutEyes(canvas, hooded, [])
    shut = _closed(points, right)
    sheet = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillPoly(sheet, [np.round(_lid_sheet(points, shut, 0)).astype(np.int32)], (255,))
    width = float(np.linalg.norm(points[right.corners[1], :2] - points[right.corners[0], :2]))
    # Well inside the sheet, clear of its feathered edges and of the lash line.
    inside = cv2.erode(sheet, np.ones((int(0.12 * width) | 1,) * 2, np.uint8)) > 0
    lid_line = np.round(shut[right.upper, :2] + [0.0, -1.0]).astype(int)
    # The skin around the eye: just beyond the ring around it.
    hull = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillPoly(
        hull, [cv2.convexHull(np.round(points[topology.eye_surround(0), :2]).astype(np.int32))], (255,)
    )
    around = (cv2.dilate(hull, np.ones((int(0.3 * width) | 1,) * 2, np.uint8)) > 0) & (hull == 0)
    skin_colour = np.median(canvas[around], axis=0)
    grey_skin = float(cv2.cvtColor(np.uint8([[skin_colour]]), cv2.COLOR_BGR2GRAY)[0, 0])

    def grey(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)

    # The open eye, and the photo's own eye narrowed by a quarter (its tall band
    # stretched too little to smear): untouched.
    narrowed = points.copy()
    narrowed[right.upper] = points[right.lower] + 0.75 * (points[right.upper] - points[right.lower])
    lid = shut_eyes.eyes[0]
    assert lids._lid_band(narrowed, lid) < lids.ShutEyes.STRETCH_FROM * lids._lid_band(points, lid)
    assert lids._lid_band(shut, lid) > lids.ShutEyes.STRETCH_FULL * lids._lid_band(hooded, lid)
    for own, target in ((hooded, hooded), (points, narrowed)):
        same = canvas.copy()
        shut_eyes.paint(same, target, own)
        assert np.array_equal(same, canvas)
    # A smear: the whole sheet a dark brown, darkest along the lid.
    smeared = canvas.copy()
    smeared[sheet > 0] = (skin_colour * 0.55).astype(np.uint8)
    cv2.polylines(smeared, [lid_line.astype(np.int32)], False, (25, 30, 40), 2)
    out = smeared.copy()
    shut_eyes.paint(out, shut)
    before, after = grey(smeared), grey(out)
    assert before[inside].mean() < 0.6 * grey_skin
    assert after[inside].mean() > 0.85 * grey_skin  # lifted to near the skin's light
    lash = after[lid_line[:, 1], lid_line[:, 0]]
    assert lash.mean() < 0.5 * grey_skin  # the lash line stays
    far = np.ones(canvas.shape[:2], bool)
    ring = points[topology.eye_surround(0), :2]
    x0, y0 = ring.min(axis=0).astype(int) - int(width)
    x1, y1 = ring.max(axis=0).astype(int) + int(width)
    far[y0:y1, x0:x1] = False
    assert np.array_equal(out[far], smeared[far])  # nothing beyond the eye
    # Lashes on a lid as light as the skin: left as they are, on an eye still open by
    # more than ``ShutEyes.FROM`` (shut, they hang below it: the next test).
    partly = points.copy()
    partly[right.upper] = points[right.lower] + 0.7 * (points[right.upper] - points[right.lower])
    assert lids._lid_band(partly, lid) > lids.ShutEyes.STRETCH_FULL * lids._lid_band(hooded, lid)
    assert retarget.eye_openness(partly)[0] > lids.ShutEyes.FROM * retarget.eye_openness(hooded)[0]
    sheet[:] = 0
    cv2.fillPoly(sheet, [np.round(_lid_sheet(points, partly, 0)).astype(np.int32)], (255,))
    inside = cv2.erode(sheet, np.ones((int(0.12 * width) | 1,) * 2, np.uint8)) > 0
    lashed = canvas.copy()
    lashed[sheet > 0] = skin_colour.astype(np.uint8)
    for x in range(int(points[right.ring, 0].min()), int(points[right.ring, 0].max()), 4):
        cv2.line(lashed, (x, 0), (x, canvas.shape[0]), (30, 30, 40), 1)
    lashed[sheet == 0] = canvas[sheet == 0]
    kept = lashed.copy()
    shut_eyes.paint(kept, partly)
    lines = inside & (grey(lashed) < 0.5 * grey_skin)
    assert grey(kept)[lines].mean() < 1.05 * grey(lashed)[lines].mean()  # the lashes stay dark
    assert np.abs(grey(kept) - grey(lashed))[inside].mean() < 4  # the lid as it was, near enough


def test_a_real_eyes_lashes_hang_below_the_lid_once_it_is_shut(media: pathlib.Path) -> None:
    """The warp carries a real eye's lashes down with its lid still pointing up, as on an
    open eye looking down: the photo's long lashes fanned over its shut lid. Shut (below
    ``ShutEyes.FROM`` of its opening), what is darker than the skin above the lid line is
    taken off the lid and hangs below the line, shorter; an eye half open is left to the
    warp."""
    import cv2

    from service.engine import pipeline

    cf = character.StillCharacter(media / "character_photo.jpg", 1280, 720).frame
    plain = dataclasses.replace(cf, shut_eyes=None)
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)

    def animate(frame: character.CharacterFrame, opening: float) -> np.ndarray:
        points = cf.points.copy()
        for eye in EYES:
            mid = cf.points[eye.lower] + retarget.EYE_CLOSE_POINT * (
                cf.points[eye.upper] - cf.points[eye.lower]
            )
            points[eye.upper] = mid + opening * (cf.points[eye.upper] - mid)
            points[eye.lower] = mid + opening * (cf.points[eye.lower] - mid)
        target = retarget.TargetFace(
            points=points, head=warp.IDENTITY, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY
        )
        return pipeline._animate(frame, target, warper)

    assert np.array_equal(animate(cf, 0.5), animate(plain, 0.5))
    shut = cf.points.copy()
    for eye in EYES:
        shut = _closed(shut, eye)
    grey = {
        name: cv2.cvtColor(animate(frame, 0.0), cv2.COLOR_BGR2GRAY).astype(float)
        for name, frame in (("before", plain), ("after", cf))
    }
    for k, eye in enumerate(EYES):
        inner, outer = shut[eye.corners[0], :2], shut[eye.corners[1], :2]
        width = float(np.linalg.norm(outer - inner))
        lid = shut[eye.upper, :2][np.argsort(shut[eye.upper, 0])]
        # The middle of the eye, where the lashes are longest, columns along the lid.
        xs = np.arange(int(min(inner[0], outer[0]) + 0.2 * width), int(max(inner[0], outer[0]) - 0.2 * width))
        line = np.interp(xs, lid[:, 0], lid[:, 1])
        ring = cf.points[topology.eye_surround(k), :2]
        below_ring = int(ring[:, 1].max())
        skin = float(np.median(grey["before"][below_ring + 3 : below_ring + 8, xs]))

        for name, image in grey.items():
            above = (_along_lid(image, xs, line, width, 0.12, 0.25) < 0.7 * skin).mean()
            hanging = (_along_lid(image, xs, line, width, -0.14, -0.04) < 0.7 * skin).mean()
            if name == "before":  # lashes fanned over the lid; nothing below the line
                assert above > 0.35 and hanging < 0.05, (k, above, hanging)
            else:  # a clean lid; the lashes below the line
                assert above < 0.2 and hanging > 0.5, (k, above, hanging)
        # Where the lids meet, one dark line.
        assert _along_lid(grey["after"], xs, line, width, -0.03, 0.03).min(axis=0).mean() < 0.5 * skin


def _along_lid(
    image: np.ndarray, xs: np.ndarray, line: np.ndarray, width: float, low: float, high: float
) -> np.ndarray:
    """Pixels of ``image`` (8 rows by the columns ``xs``) from ``low`` to ``high`` eye
    widths above the lid ``line`` (its row in each column; below it: < 0)."""
    rows = np.round(line[None, :] - np.linspace(low, high, 8)[:, None] * width).astype(int)
    return image[rows, np.broadcast_to(xs, rows.shape)]


def test_only_a_real_eyes_area_reaches_up_to_its_lashes_tips(media: pathlib.Path) -> None:
    """A shut real eye's lashes are taken off its lid up to ``LASH_REACH`` past the ring,
    so its area (the box painted, and the skin filled in over it) reaches that far up; a
    drawn eye's lashes are drawn along its lid, and its area stays the ring's, as it was
    before real eyes' lashes were turned (the drawn eyes' renders are the same)."""
    for name, drawn in (("character_photo.jpg", False), ("character_cartoon.jpg", True)):
        frame = character.StillCharacter(media / name, 1280, 720).frame
        assert frame.shut_eyes is not None
        out = frame.canvas.copy()
        for lid in frame.shut_eyes.eyes:
            assert lid.drawn is drawn
            area = lids._EyeArea(out, frame.points, lid)
            top = area.shift[1]
            ring_top = area.ring[:, 1].min() - area.feather
            tips_top = area.tips[:, 1].min() - area.feather
            assert tips_top < ring_top - 0.15 * area.width  # the tips reach well past the ring
            assert top == pytest.approx(max(0, np.floor(ring_top if drawn else tips_top)), abs=1)
