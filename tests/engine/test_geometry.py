"""Pure geometry of the engine: pose fitting, warps, framing, smoothing, camera drift."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import camera, composite, framing, glasses, landmarks, lids, retarget, topology, warp


def test_umeyama_recovers_a_similarity_in_3d() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3))
    rot = retarget.from_euler(10, -20, 5)
    dst = 1.7 * src @ rot.T + [3, -2, 1]
    scale, fitted, trans = retarget.umeyama(src, dst)
    assert scale == pytest.approx(1.7)
    np.testing.assert_allclose(fitted, rot, atol=1e-9)
    np.testing.assert_allclose(trans, [3, -2, 1], atol=1e-9)


@pytest.mark.parametrize("angles", [(0, 0, 0), (12, -25, 8), (-30, 15, -20)])
def test_euler_round_trips(angles: tuple[float, float, float]) -> None:
    assert retarget.euler(retarget.from_euler(*angles)) == pytest.approx(angles)


def test_triangle_affines_map_destination_corners_onto_source_corners() -> None:
    rng = np.random.default_rng(2)
    src, dst = rng.random((40, 3, 2)) * 100, rng.random((40, 3, 2)) * 100
    affines, valid = warp.triangle_affines(src, dst)
    assert valid.all()
    mapped = np.einsum("kij,kpj->kpi", affines[:, :, :2], dst) + affines[:, None, :, 2]
    np.testing.assert_allclose(mapped, src, atol=1e-9)


def test_degenerate_triangles_are_marked_invalid() -> None:
    dst = np.array([[[0, 0], [1, 1], [2, 2]]], dtype=float)
    _, valid = warp.triangle_affines(dst, dst)
    assert not valid.any()


def test_identity_warp_leaves_the_image_unchanged() -> None:
    image = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    tri = np.array([[[0, 0], [64, 0], [0, 48]], [[64, 0], [64, 48], [0, 48]]], dtype=float)
    affines, valid = warp.triangle_affines(tri, tri)
    maps = warp.Warper(1).maps(warp.Roi(0, 0, 64, 48), tri, affines, valid)
    np.testing.assert_array_equal(maps.apply(image), image)


def test_face_mesh_triangles_are_the_tessellation_without_separating_cycles() -> None:
    triangles = topology.face_triangles()
    assert triangles.shape == (852, 3)
    assert triangles.max() < 468
    assert len({tuple(t) for t in triangles}) == len(triangles)


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ((512, 512), (1280, 720)),
        ((512, 512), (720, 1280)),
        ((1920, 1080), (720, 1280)),
        ((800, 600), (1584, 672)),
    ],
)
def test_framing_never_stretches_and_keeps_the_face_in_view(
    src: tuple[int, int], out: tuple[int, int]
) -> None:
    w, h = src
    face = np.array([[w * 0.4, h * 0.3], [w * 0.6, h * 0.55]])
    fr = framing.choose(w, h, face, *out)
    canvas_face = fr.to_canvas(face)
    assert (canvas_face[:, 0] >= 0).all() and (canvas_face[:, 0] <= out[0]).all()
    assert (canvas_face[:, 1] >= 0).all() and (canvas_face[:, 1] <= out[1]).all()
    image = np.full((h, w, 3), 200, dtype=np.uint8)
    assert framing.render(image, fr).shape == (out[1], out[0], 3)


@pytest.mark.parametrize("out", [(1280, 720), (720, 1280)])
def test_the_pictures_window_clips_a_mask_as_its_own_alpha_does(out: tuple[int, int]) -> None:
    """A square picture leaves bands; a mask region anywhere on the canvas is limited to
    the picture exactly as multiplying by the picture's feathered alpha would."""
    face = np.array([[130.0, 120.0], [380.0, 330.0]])  # a close-up: the picture is fitted whole
    fr = framing.choose(512, 512, face, *out)
    window = framing.window(fr, 512, 512)
    assert (
        window is not None and framing.window(framing.choose(1280, 720, face, 1280, 720), 1280, 720) is None
    )
    image = np.full((512, 512, 3), 200, np.uint8)
    canvas = framing.render(image, fr)
    assert (window.alpha[canvas.sum(axis=2) == 600] > 0.999).all()  # 1 where the picture shows
    rng = np.random.default_rng(5)
    w, h = out
    for x0, y0, x1, y1 in [
        (0, 0, w, h),
        (w // 3, h // 3, w // 2, h // 2),
        (0, h // 4, w // 3, h),
        (w - 90, 0, w, 50),
    ]:
        mask = rng.random((y1 - y0, x1 - x0)).astype(np.float32)
        expected = mask * window.alpha[y0:y1, x0:x1]
        np.testing.assert_allclose(window.clip(mask.copy(), x0, y0), expected, atol=1e-6)


def test_one_euro_filter_removes_jitter_but_follows_a_step() -> None:
    rng = np.random.default_rng(3)
    filt = landmarks.OneEuroFilter(24, min_cutoff=1.5, beta=4.0)
    still = [filt(np.array([0.0]) + rng.normal(scale=0.01, size=1))[0] for _ in range(48)]
    assert np.std(still[10:]) < 0.006
    stepped = [filt(np.array([1.0]))[0] for _ in range(6)]
    assert stepped[-1] > 0.9


@pytest.mark.parametrize("anchor", [None, (640.0, 300.0), (1270.0, 10.0), (0.0, 720.0)])
def test_camera_drift_is_seeded_subtle_and_never_shows_a_border(anchor: tuple[float, float] | None) -> None:
    a, b = camera.CameraDrift(5, 1280, 720, anchor), camera.CameraDrift(5, 1280, 720, anchor)
    c = camera.CameraDrift(6, 1280, 720, anchor)
    for t in (0.0, 3.3, 17.0):
        np.testing.assert_array_equal(a.matrix(t), b.matrix(t))
    assert not np.allclose(a.matrix(1.0), c.matrix(1.0))
    for t in np.linspace(0, 30, 61):
        m = a.matrix(float(t))
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        corners = np.array([[0, 0, 1], [1280, 0, 1], [0, 720, 1], [1280, 720, 1]]) @ inv.T
        assert (corners[:, 0] >= -1e-6).all() and (corners[:, 0] <= 1280 + 1e-6).all()
        assert (corners[:, 1] >= -1e-6).all() and (corners[:, 1] <= 720 + 1e-6).all()


def test_camera_drift_breathes_around_the_face_and_keeps_it_in_place() -> None:
    face = (500.0, 260.0)
    drift = camera.CameraDrift(9, 1280, 720, face)
    moved = []
    for t in np.linspace(0, 30, 121):
        m = drift.matrix(float(t))
        moved.append(np.hypot(*(m[:, :2] @ face + m[:, 2] - face)))
    assert max(moved) < 2.0  # pixels: the face stays put while the shot zooms around it


def _soft_disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip((r - np.hypot(xx - cx, yy - cy)) / 12.0, 0.0, 1.0).astype(np.float32)


def test_lay_person_matches_warping_and_blending_the_whole_region() -> None:
    rng = np.random.default_rng(5)
    h, w = 150, 200
    source = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    roi = warp.Roi(20, 10, 190, 140)
    ry, rx = np.mgrid[roi.y0 : roi.y1, roi.x0 : roi.x1].astype(np.float32)
    maps = (rx * 0.97 + 3.2, ry * 1.02 - 1.7)  # a smooth warp: zoom and shift
    # Opaque core, soft edge, transparent elsewhere; and a band with no person at all.
    alpha = _soft_disc(roi.y1 - roi.y0, roi.x1 - roi.x0, 70, 60, 45)
    expected = background.copy()
    expected[roi.slices] = composite.blend_person(warp.remap(source, *maps), background[roi.slices], alpha)
    out = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out[: roi.y0], out[roi.y1 :], out[:, : roi.x0], out[:, roi.x1 :] = (
        expected[: roi.y0],
        expected[roi.y1 :],
        expected[:, : roi.x0],
        expected[:, roi.x1 :],
    )
    composite.lay_person(out, roi, source, maps, background[roi.slices], alpha)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_the_clean_plate_shows_only_where_the_warp_moved_the_person_away() -> None:
    """Behind a still person at rest the picture itself shows (no blurred halo of the
    fill around their hair); where the warp moved them, the clean plate does, including
    where the rig carried the picture around the head along with it."""
    rng = np.random.default_rng(8)
    h, w = 120, 160
    picture = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    person = _soft_disc(h, w, 80, 60, 30)
    plate, area = composite.clean_plate(picture, person)
    assert area[60, 80] == 1.0 and area[60, 130] < 1.0 and area[5, 5] == 0.0  # fill reaches beyond
    roi = warp.Roi(20, 8, 152, 112)
    f = 4
    _, gx, gy = warp._grid(roi, f)
    shape = (len(gy), len(gx))

    def shifted(dx: float, within: float = np.inf) -> warp.WarpMaps:
        """The person (and up to ``within`` px around their centre) moved ``dx`` px right."""
        carried = np.hypot(gx[None, :] - 80, gy[:, None] - 60) <= within
        lo_x = np.where(carried, gx[None, :] - np.float32(dx), gx[None, :]).astype(np.float32)
        return warp.WarpMaps(roi, f, lo_x, np.broadcast_to(gy[:, None], shape).astype(np.float32), [])

    ys, xs = roi.slices
    bare = np.zeros(shape, dtype=np.float32)  # nothing laid over the background
    at_rest = composite.uncovered(picture, plate, area, shifted(0.0), bare)
    assert np.array_equal(at_rest, picture[ys, xs])
    barely = composite.uncovered(picture, plate, area, shifted(composite.PLATE_STILL * 0.9), bare)
    assert np.array_equal(barely, picture[ys, xs])
    gone = composite.uncovered(picture, plate, area, shifted(40.0), bare)
    # Where they were (well inside the fill: at its soft edge a textured plate is blended
    # with the picture), and what is there now.
    assert area[60, 50] == 1.0 and area[60, 5] == 0.0
    assert np.abs(gone[60 - 8, 50 - 20].astype(int) - plate[60, 50]).max() <= 1
    assert np.array_equal(gone[:, 140 - 20 :], picture[ys, xs][:, 140 - 20 :])  # never the person's
    # A head moved 10 px, carrying the picture around it: at (72, 60) the warp samples
    # the picture at (62, 60), inside the person too. The picture's own person there
    # would show as a ghost beside the moved head; the plate shows.
    carried = composite.uncovered(picture, plate, area, shifted(10.0, within=45.0), bare)
    assert area[60, 62] == 1.0 and area[60, 72] == 1.0
    assert np.abs(carried[60 - 8, 72 - 20].astype(int) - plate[60, 72]).max() <= 1


@pytest.mark.parametrize("f", [1, 2, 4, 8])
def test_the_uncovered_plate_is_blended_exactly_where_a_whole_roi_blend_would_put_it(f: int) -> None:
    """The compiled blend visits only the samples where the plate shows and the person
    laid over it is not opaque, and there gives what upsampling the share over the
    whole ROI and blending everywhere would."""
    import cv2

    rng = np.random.default_rng(f)
    for _ in range(6):
        h, w = int(rng.integers(90, 200)), int(rng.integers(90, 260))
        picture = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        person = _soft_disc(h, w, w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6), min(h, w) / 3)
        plate, area = composite.clean_plate(picture, person)
        roi = warp.Roi(int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4)), w - 3, h)
        _, gx, gy = warp._grid(roi, f)
        shape = (len(gy), len(gx))
        dx, dy, zoom = rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(0.95, 1.05)
        maps = warp.WarpMaps(
            roi,
            f,
            np.broadcast_to(gx * zoom - dx, shape).astype(np.float32),
            np.broadcast_to((gy * zoom - dy)[:, None], shape).astype(np.float32),
            [],
        )
        moved = warp.smoothstep(maps.displacement(), composite.PLATE_STILL, composite.PLATE_MOVED)
        share = np.clip(maps.upsample(maps.coarse(area, moved=False) * moved), 0.0, 1.0)
        back = picture[roi.slices]
        everywhere = cv2.blendLinear(plate[roi.slices], back, share, 1.0 - share)
        cover = maps.coarse(person)  # the person laid over it, opaque inside
        blended = composite.uncovered(picture, plate, area, maps, cover)
        assert not np.array_equal(blended, back)
        opaque = maps.upsample(cover) >= 1.0 - composite.ALPHA_EPS
        assert np.abs(blended.astype(int) - everywhere)[~opaque].max() <= 1
        inside = cv2.erode(opaque.astype(np.uint8), np.ones((2 * f + 1, 2 * f + 1), np.uint8)) > 0
        assert inside.any() and np.array_equal(blended[inside], back[inside])  # skipped


def test_the_clean_plate_continues_the_background_texture_through_it() -> None:
    """What a moving head uncovers continues the texture beside it, to the middle of
    the fill, not a smooth smear; its colours stay the scene's; outside the fill the
    picture is untouched."""
    rng = np.random.default_rng(9)
    h, w = 240, 320
    picture = np.clip(128 + rng.normal(0, 30, (h, w, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    person = np.zeros((h, w), np.float32)
    person[60:, 110:210] = 1.0  # a person standing in a grainy scene
    plate, area = composite.clean_plate(picture, person)
    assert np.array_equal(plate[area == 0], picture[area == 0])
    near = plate[150:, 98:108].astype(np.float32)  # inside the fill, just within its edge
    middle = plate[150:, 150:170].astype(np.float32)
    assert area[150:, 98:108].min() == 1.0 and area[150:, 150:170].min() == 1.0
    assert near.std() > 15 and middle.std() > 15  # grain, as beside it (30), not a flat fill
    assert abs(middle.mean() - 128) < 8


def test_a_banded_pictures_clean_plate_is_filled_from_the_picture_not_the_bands() -> None:
    """A person at the edge of a picture framed with bands beside it uncovers more of the
    picture's background when they move, not the bands' dark blur."""
    h, w = 240, 320
    canvas = np.full((h, w, 3), 200, np.uint8)  # the picture's bright wall
    canvas[:, :80] = 40  # the band: a dark blur beside the picture
    person = np.zeros((h, w), np.float32)
    person[100:, 80:180] = 1.0  # standing at the picture's left edge
    mixed, _ = composite.clean_plate(canvas, person)
    assert mixed[200:, 85:95].mean() < 170  # filled partly from the band
    plate, area = composite.clean_plate(canvas, person, within=(80, 0, w, h))
    assert plate[200:, 85:95].min() >= 190  # the wall continues down
    assert area[200:, 85:95].min() == 1.0 and not area[:, :80].any()
    assert np.array_equal(plate[:, :80], canvas[:, :80])  # the band untouched


@pytest.mark.parametrize("f", [1, 4])
def test_no_sample_is_taken_past_the_edge_it_moves_away_from(f: int) -> None:
    """Content moving 30 px away from an edge would sample past it (a band's blur, or
    the edge repeated as streaks): samples are drawn back, smoothly and without folding,
    toward the edge; those that stay nearer their own place are left exactly."""
    roi = warp.Roi(0, 0, 200, 200)
    box = (0, 50, 200, 200)  # a band above y = 50
    _, gx, gy = warp._grid(roi, f)
    map_x = np.broadcast_to(gx[None, :], (len(gy), len(gx))).copy()
    map_y = np.broadcast_to(gy[:, None] - 30.0, map_x.shape).copy()  # all moved 30 px down
    map_x[:, -1] += 0.25  # and sideways a little, far from the side edges
    before_x, before_y = map_x.copy(), map_y.copy()
    warp.keep_within(roi, f, map_x, map_y, box)
    inside = gy >= 50
    rows = map_y[inside, 0]
    assert rows.min() >= 50 - warp.KEEP_WITHIN_SHARE * warp.KEEP_WITHIN_SLACK  # before: 20
    assert (np.diff(rows) > 0).all()  # no fold: the strip by the edge is stretched
    far = gy >= 50 + 2 * 30 / warp.KEEP_WITHIN_SHARE
    np.testing.assert_array_equal(map_y[far], before_y[far])
    np.testing.assert_array_equal(map_x, before_x)
    outside = gy < 50 - f  # the band's own samples (not shown) are left
    np.testing.assert_array_equal(map_y[outside], before_y[outside])


def test_coarse_shapes_leave_the_full_resolution_maps_unchanged() -> None:
    # Background: two big triangles over the canvas; "face": a small fan inside the
    # first detail ROI, moved so its maps differ from the background's.
    bg = np.array([[[0, 0], [160, 0], [0, 120]], [[160, 0], [160, 120], [0, 120]]], dtype=float)
    centre = np.array([80.0, 60.0])
    ring = centre + 20 * np.stack(
        [np.cos(np.linspace(0, 2 * np.pi, 9)[:-1]), np.sin(np.linspace(0, 2 * np.pi, 9)[:-1])], axis=1
    )
    fan = np.stack([np.broadcast_to(centre, ring.shape), ring, np.roll(ring, -1, axis=0)], axis=1)
    dst = np.concatenate([bg, fan])
    src = np.concatenate([bg, fan + [4.0, -3.0]])
    affines, valid = warp.triangle_affines(src, dst)
    roi, details = warp.Roi(0, 0, 160, 120), [(warp.Roi(50, 30, 110, 90), 2)]
    plain = warp.Warper(4).maps(roi, dst, affines, valid, details)
    fast = warp.Warper(4).maps(roi, dst, affines, valid, details, coarse_shapes=len(bg))
    for a, b in zip(plain.full(), fast.full(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    # The coarse maps inside the face come from the finer patch: the same affine pieces.
    np.testing.assert_allclose(fast.lo_x[12:18, 17:23], plain.lo_x[12:18, 17:23], atol=0.05)


def test_a_kept_coarse_mask_covers_where_the_person_went_and_where_they_were() -> None:
    import cv2

    mask = np.zeros((120, 160), np.float32)
    cv2.circle(mask, (60, 60), 25, (1.0,), -1)
    mask = cv2.GaussianBlur(mask, (21, 21), 0)  # feathered, as person masks are
    shift = warp.triangle_affines(  # the whole ROI moved 20 px left: dst x samples src x + 20
        np.array([[[20, 0], [180, 0], [20, 120]], [[180, 0], [180, 120], [20, 120]]], float),
        np.array([[[0, 0], [160, 0], [0, 120]], [[160, 0], [160, 120], [0, 120]]], float),
    )
    square = np.array([[[0, 0], [160, 0], [0, 120]], [[160, 0], [160, 120], [0, 120]]], float)
    maps = warp.Warper(4).maps(warp.Roi(0, 0, 160, 120), square, *shift)
    moved, kept = maps.apply_coarse(mask), maps.apply_coarse(mask, keep=1.0)
    assert moved[60, 40] > 0.99 and moved[60, 75] < 0.01  # the person went left
    assert kept[60, 40] > 0.99 and kept[60, 75] > 0.99  # kept: both places
    expected = np.maximum(moved, mask)
    assert np.abs(kept - expected).max() < 0.05
    # Firmly kept: the person's whole soft edge where they were is covered, so it cannot
    # show through as a faint second outline.
    firm = maps.apply_coarse(mask, keep=8.0)
    edge = (mask > 0.4) & (mask < 0.75)
    assert firm[edge].min() > 0.97 and kept[edge].min() < 0.8


def test_person_mask_blurs_the_face_outline_only_near_the_face() -> None:
    rng = np.random.default_rng(3)
    segmentation = rng.random((180, 320)).astype(np.float32)
    face = np.zeros((478, 3), dtype=np.float32)
    angles = np.linspace(0, 2 * np.pi, len(topology.FACE_OVAL), endpoint=False)
    face[topology.FACE_OVAL, 0] = 40 + 30 * np.cos(angles)  # near the left edge
    face[topology.FACE_OVAL, 1] = 90 + 40 * np.sin(angles)
    face[:, :2] = np.where(face[:, :2] == 0, face[topology.FACE_OVAL, :2].mean(axis=0), face[:, :2])
    import cv2

    hull = np.zeros(segmentation.shape, dtype=np.uint8)
    cv2.fillPoly(hull, [np.round(face[topology.FACE_OVAL, :2]).astype(np.int32)], (255,))
    k = max(3, int(float(np.ptp(face[:, 0])) * 0.08)) | 1
    whole = np.maximum(segmentation, cv2.GaussianBlur(hull, (k, k), 0).astype(np.float32) / 255)
    np.testing.assert_array_equal(
        composite.person_mask(segmentation, face), cv2.GaussianBlur(whole, (5, 5), 0)
    )


def test_person_mask_from_a_half_size_segmentation_is_the_frame_size_and_holds_the_face() -> None:
    face = np.zeros((478, 3), dtype=np.float32)
    angles = np.linspace(0, 2 * np.pi, len(topology.FACE_OVAL), endpoint=False)
    face[topology.FACE_OVAL, 0] = 200 + 60 * np.cos(angles)
    face[topology.FACE_OVAL, 1] = 180 + 80 * np.sin(angles)
    face[:, :2] = np.where(face[:, :2] == 0, face[topology.FACE_OVAL, :2].mean(axis=0), face[:, :2])
    segmentation = np.zeros((180, 320), dtype=np.float32)  # the model missed the person
    mask = composite.person_mask(segmentation, face, (360, 640))
    assert mask.shape == (360, 640) and mask.dtype == np.float32
    assert mask[180, 200] > 0.95  # the face outline is always part of the person
    assert mask[20, 600] == 0.0


def _eyes_face(opening: float) -> np.ndarray:
    """Landmarks with both eyes 40 px wide, lids ``opening`` eye widths apart."""
    from service.engine import topology as t

    pts = np.zeros((478, 3), dtype=np.float32)
    for (_, upper, lower, (a, b), iris), cx in zip(t.EYES, (100.0, 200.0), strict=True):
        pts[a, :2], pts[b, :2] = (cx - 20, 100), (cx + 20, 100)
        xs = np.linspace(cx - 15, cx + 15, len(upper))
        pts[upper, 0], pts[upper, 1] = xs, 100 - 20 * opening
        pts[lower, 0], pts[lower, 1] = xs, 100 + 20 * opening
        pts[iris, 0], pts[iris, 1] = cx, 100
    return pts


def test_a_video_characters_own_blink_is_reopened_from_its_last_open_view() -> None:
    eyes = lids.OpenEyes()
    open_canvas = np.full((200, 300, 3), 90, dtype=np.uint8)
    open_canvas[95:105, 90:110] = 250  # the eye's white, visible while open
    first = _eyes_face(0.25)
    assert eyes.apply(open_canvas.copy(), first) is first  # open: nothing to do

    shut_canvas = np.full((200, 300, 3), 90, dtype=np.uint8)  # lid skin over the eye
    shut = _eyes_face(0.03)
    points = eyes.apply(shut_canvas, shut)
    opening = np.abs(points[topology.RIGHT_EYE_UPPER, 1] - points[topology.RIGHT_EYE_LOWER, 1])
    assert opening.mean() == pytest.approx(10.0, abs=0.5)  # back to the open lids
    assert shut_canvas[100, 100].min() > 200  # and the open eye's pixels are back


def test_a_slight_narrowing_is_not_taken_for_a_blink() -> None:
    eyes = lids.OpenEyes()
    eyes.apply(np.zeros((200, 300, 3), np.uint8), _eyes_face(0.25))
    narrower = _eyes_face(0.235)
    assert eyes.apply(np.zeros((200, 300, 3), np.uint8), narrower) is narrower


def test_an_eye_still_opening_after_a_blink_is_reopened_too() -> None:
    """A blink shuts fast and reopens over ten or more frames; an eye at three quarters of its
    usual opening is still the blink's, and the performer's lids must start from open."""
    eyes = lids.OpenEyes()
    eyes.apply(np.zeros((200, 300, 3), np.uint8), _eyes_face(0.25))
    reopening = _eyes_face(0.19)
    points = eyes.apply(np.zeros((200, 300, 3), np.uint8), reopening)
    assert points is not reopening
    opening = np.abs(points[topology.RIGHT_EYE_UPPER, 1] - points[topology.RIGHT_EYE_LOWER, 1])
    assert opening.mean() == pytest.approx(10.0, abs=0.5)


def test_how_open_an_eye_is_can_come_from_its_own_detection() -> None:
    """The smoothed landmarks flatten a blink: the frame's own detection decides."""
    eyes = lids.OpenEyes()
    eyes.apply(np.zeros((200, 300, 3), np.uint8), _eyes_face(0.25))
    smoothed = _eyes_face(0.24)
    assert eyes.apply(np.zeros((200, 300, 3), np.uint8), smoothed, np.array([0.05, 0.5])) is not smoothed


def test_eye_ratios_are_taken_against_the_usual_opening_when_given() -> None:
    face = _eyes_face(0.25).astype(np.float64)
    face[:, 2] = 0.0
    for i in topology.STABLE:  # spread the skull points so the pose fit is well posed
        face[i, :2] = [150 + 60 * np.cos(i), 120 + 60 * np.sin(i)]
    right, left = retarget.eye_openness(face)
    squint = retarget.DriverModel(face)  # the rest frame caught the eyes narrower than usual
    usual = retarget.DriverModel(face, eyes=(right * 1.2, left * 1.2))  # the clip's median
    assert squint.decompose(face).eyes == pytest.approx((1.0, 1.0))
    assert usual.decompose(face).eyes == pytest.approx((1 / 1.2, 1 / 1.2), rel=1e-6)


def _skull(seed: int = 3) -> np.ndarray:
    """A rigid 3D point cloud standing in for a face's 478 landmarks (pixels)."""
    rng = np.random.default_rng(seed)
    face = np.column_stack(
        [rng.uniform(-80, 80, 478), rng.uniform(-100, 100, 478), rng.uniform(-40, 40, 478)]
    )
    face[topology.INNER_LIP_PAIRS[:, 1]] = face[topology.INNER_LIP_PAIRS[:, 0]]  # lips closed
    return face + np.array([256.0, 256.0, 0.0])


def _posed(face: np.ndarray, yaw: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    centre = face.mean(axis=0)
    return (face - centre) @ retarget.from_euler(0.0, yaw, 0.0).T + centre + np.array([*shift, 0.0])


def test_head_pose_is_taken_from_the_usual_pose_not_the_rest_frame() -> None:
    """The rest frame is chosen for its expression and may catch the head turned and aside:
    the character follows the performer's change from where they mostly are."""
    face = _skull()
    rest = _posed(face, 16.0, (-50.0, 0.0))  # lips closed here, but turned and aside
    clip = [_posed(face, yaw) for yaw in (-2.0, 0.0, 0.0, 1.0, 3.0)]  # mostly facing the camera
    plain = retarget.DriverModel(rest)
    usual = retarget.HeadPose.usual([plain.pose(p) for p in clip])
    model = retarget.DriverModel(rest, usual=usual)
    facing = model.decompose(_posed(face, 0.0))
    assert facing.angles == pytest.approx((0.0, 0.0, 0.0), abs=0.2)
    assert facing.centre_shift == pytest.approx((0.0, 0.0), abs=1e-3)
    assert facing.scale == pytest.approx(1.0, abs=1e-3)
    assert np.abs(facing.expression).max() < 1e-6  # a rigid turn is no expression
    turned = model.decompose(_posed(face, 12.0))
    assert turned.angles[1] == pytest.approx(12.0, abs=0.3)
    assert plain.decompose(_posed(face, 0.0)).angles[1] == pytest.approx(-16.0, abs=0.3)  # the old way
    # The character at the performer's usual pose keeps its own.
    char = _posed(face, 0.0) * np.array([1.3, 1.3, 1.3]) + np.array([300.0, 40.0, 0.0])
    target = retarget.Retargeter(model, intensity=3, body_control=True).target(char, facing)
    assert np.abs(target.points[:, :2] - char[:, :2]).max() < 1.0


def test_an_eye_moves_as_a_whole_by_a_share_of_its_corners_expression() -> None:
    """FaceMesh slides an eye's corners along its lids as they lower: the character's eye,
    corners and lids together, follows only ``EYE_FOLLOW`` of the corners' offsets, and
    keeps its shape; the skin around it takes the expression whole."""
    face = _skull()
    model = retarget.DriverModel(face)
    eye = topology.RIGHT_EYE
    expression = np.zeros((478, 3))
    expression[eye.ring, 1] = 4.0  # the performer's whole right eye read 4 px lower
    below = 50  # a cheek point, not part of either eye
    assert below not in eye.ring and below not in topology.LEFT_EYE.ring
    expression[below, 1] = 4.0
    frame = retarget.DriverFrame(
        scale=1.0,
        angles=(0.0, 0.0, 0.0),
        centre_shift=np.zeros(2),
        expression=expression,
        eyes=(1.0, 1.0),
        gaze=np.zeros((2, 2)),
    )
    target = retarget.Retargeter(model, intensity=3, body_control=False).target(face, frame)
    moved = target.points[:, :2] - face[:, :2]
    assert 0.0 < retarget.EYE_FOLLOW < 1.0
    assert moved[eye.ring] == pytest.approx(
        np.tile([0.0, 4.0 * retarget.EYE_FOLLOW], (len(eye.ring), 1)), abs=1e-3
    )
    assert moved[topology.LEFT_EYE.ring] == pytest.approx(np.zeros((len(eye.ring), 2)), abs=1e-3)
    assert moved[below] == pytest.approx([0.0, 4.0], abs=1e-3)


def test_the_per_frame_path_makes_no_lapack_calls() -> None:
    """``np.linalg.inv``/``solve`` go through OpenBLAS, whose threads then spin on the other
    core: one 2x2 inverse per frame cost a render ~20 % more CPU. Small systems are solved
    in closed form (``warp.inv2``, ``warp.triangle_affines``)."""
    import inspect
    import pathlib
    import re

    root = pathlib.Path(warp.__file__).parent
    for name in (
        "composite.py",
        "mouth.py",
        "eyeballs.py",
        "camera.py",
        "rig.py",
        "warp.py",
        "pipeline.py",
        "character.py",
        "driver.py",
        "eyefit.py",
        "lids.py",
        "glasses.py",
    ):
        source = (root / name).read_text()
        assert not re.search(r"np\.linalg\.(inv|solve|pinv|lstsq|det)\(", source), name
    # Nor through numpy's fitting: the lashes drawn along a narrowing lid, every frame,
    # fit the lid's arc in closed form (``np.polyfit`` is LAPACK's least squares), as a
    # video's glasses fit each frame's rim.
    for step in (
        glasses.find_rim,
        glasses._rim_in_box,
        warp.parabola,
        lids.ShutEyes.paint,
        lids.ShutEyes._draw,
        lids.ShutEyes._lift,
        lids.ShutEyes._turn_lashes,
        lids._lash_stroke,
        lids._lid_arc,
    ):
        assert "polyfit" not in inspect.getsource(step), step.__name__


def test_the_lids_arc_is_the_least_squares_parabola() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = np.sort(rng.uniform(0.0, 1.0, 7))
        y = rng.normal(size=7)
        at = np.linspace(0.0, 1.0, 24)
        np.testing.assert_allclose(lids._parabola(x, y)(at), np.polyval(np.polyfit(x, y, 2), at), atol=1e-9)


def test_the_performers_mouth_snapping_open_reaches_the_character_at_once() -> None:
    """Speech opens and shuts the mouth within two or three frames: the driver's
    smoothing lets most of an opening through on its first frame (with the One-Euro
    filter's usual 1 Hz speed smoothing, about half)."""
    from service.engine import driver

    face = _skull()
    lower = topology.INNER_LIP_PAIRS[:, 1]
    opened = face.copy()
    opened[lower, 1] += 0.05 * landmarks.face_size(face)  # a twentieth of the eyes' span

    def first_frame_share(d_cutoff: float) -> float:
        smoother = landmarks.FaceSmoother(24, driver.MIN_CUTOFF, driver.BETA, d_cutoff)
        for _ in range(12):
            smoother(face)
        shown = smoother(opened)
        assert shown is not None
        return float(((shown - face)[lower, 1] / (opened - face)[lower, 1]).mean())

    assert first_frame_share(driver.D_CUTOFF) > 0.6
    assert first_frame_share(1.0) < 0.55
    # Still: a face at rest stays put.
    smoother = landmarks.FaceSmoother(24, driver.MIN_CUTOFF, driver.BETA, driver.D_CUTOFF)
    for _ in range(5):
        shown = smoother(face)
    assert shown is not None and np.abs(shown - face).max() < 1e-9
