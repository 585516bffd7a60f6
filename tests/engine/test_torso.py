"""TorsoTracker: the performer's shoulders and chest, followed by optical flow below the face."""

from __future__ import annotations

import dataclasses
import math
import pathlib

import cv2
import numpy as np
import pytest

from service import engine
from service.engine import character, landmarks, pipeline, retarget, rig, topology, torso, warp
from tests.engine import clips

SIZE = (360, 640)  # the talking portrait at half size (w, h)


@pytest.fixture(scope="module")
def portrait(media: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """The talking portrait's first frame (striped shirt below the face) and its landmarks."""
    frame = cv2.resize(
        next(clips.frames(media / "driving_talking_portrait.mp4")), SIZE, interpolation=cv2.INTER_AREA
    )
    with landmarks.FaceTracker(video=False) as tracker:
        points = tracker.detect(frame)
    assert points is not None
    return frame, points


def _moved(frame: np.ndarray, points: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = cv2.warpAffine(frame, affine, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = points.copy()
    moved[:, :2] = warp.apply_affine(affine, points[:, :2])
    return out, moved


def test_a_lean_is_followed_as_a_shift_a_tilt_and_a_scale(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    """The whole performer sways 24 px right and 10 px down, tilts 4 degrees and comes 5 %
    closer over a second, then holds: the torso's motion is that similarity."""
    frame, points = portrait
    centre = np.array([SIZE[0] / 2, SIZE[1] * 0.75])
    tracker = torso.TorsoTracker(24)
    motion = None
    for i in range(48):
        k = min(i / 24, 1.0)
        affine = torso.similarity(1 + 0.05 * k, 4.0 * k, centre, np.array([24.0, 10.0]) * k)
        motion = tracker(*_moved(frame, points, affine))
        assert motion is not None
    assert motion is not None
    assert motion.angle == pytest.approx(4.0, abs=0.4)
    assert motion.scale == pytest.approx(1.05, abs=0.01)
    chest = motion.pivot + np.array([[-60.0, 0.0], [60.0, 0.0], [0.0, 80.0]])
    found = warp.apply_affine(motion.affine(), chest)
    truth = warp.apply_affine(affine, chest)
    assert np.abs(found - truth).max() < 2.0  # on a 640 px tall frame


def test_a_frame_shown_again_is_not_tracked_again(
    portrait: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference slower than the output rate shows each frame at two output instants or
    more: the same frame is not tracked twice (nothing moved in it), while the smoothing
    goes on toward where the torso was found."""
    frame, points = portrait
    centre = np.array([SIZE[0] / 2, SIZE[1] * 0.75])
    tracker = torso.TorsoTracker(24)
    flows = []
    real_flow = torso._flow
    monkeypatch.setattr(torso, "_flow", lambda *a: flows.append(1) or real_flow(*a))
    assert tracker(frame, points) is not None
    shifted = _moved(frame, points, torso.similarity(1.0, 0.0, centre, np.array([12.0, 0.0])))
    first = tracker(*shifted)
    again = tracker(*shifted)
    assert first is not None and again is not None
    assert len(flows) == 2  # forward and back, once: for the one new frame
    assert 0 < first.shift[0] < again.shift[0] <= 12.5  # still smoothing toward 12 px


def test_a_nod_leaves_the_torso_where_it_was(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    """Only the head moves (down and back, 20 px): the chest below it stays still."""
    frame, points = portrait
    cut = int(points[topology.CHIN, 1] + 4)
    tracker = torso.TorsoTracker(24)
    for i in range(36):
        dy = int(round(20 * math.sin(math.pi * i / 18) ** 2))
        nodded = frame.copy()
        nodded[dy:cut] = frame[: cut - dy]
        moved = points.copy()
        moved[:, 1] += dy
        motion = tracker(nodded, moved)
        assert motion is not None
        assert np.abs(motion.shift).max() < 0.5 and abs(motion.angle) < 0.2


def test_a_close_up_has_no_torso_to_follow(media: pathlib.Path) -> None:
    """The expressive clip is cut off at the neck: None, for the render's fallback."""
    frame = next(clips.frames(media / "driving_expressive.mp4"))
    with landmarks.FaceTracker(video=False) as tracker:
        points = tracker.detect(frame)
    assert points is not None
    follow = torso.TorsoTracker(24)
    assert follow(frame, points) is None
    assert follow(frame, points) is None  # decided on the first frame, for the whole clip


def test_points_lost_out_of_frame_are_replaced_and_the_anchor_kept(
    portrait: tuple[np.ndarray, np.ndarray],
) -> None:
    """The performer sinks until much of the chest seen at first has left the bottom of
    the frame; new corners replace the lost ones, and on the way back the motion returns
    to identity: the new points were anchored through the motion found so far."""
    frame, points = portrait
    tracker = torso.TorsoTracker(24)
    path = [min(i, 60 - i) for i in range(61)] + [0] * 12  # down 120 px, and back
    for step in path:
        affine = torso.similarity(1.0, 0.0, np.zeros(2), np.array([0.0, 2.0 * step]))
        motion = tracker(*_moved(frame, points, affine))
        assert motion is not None
    assert tracker.reseeds > 0
    assert np.abs(motion.shift).max() < 1.5 and abs(motion.angle) < 0.3
    assert motion.scale == pytest.approx(1.0, abs=0.01)


def test_a_hand_passing_over_the_chest_does_not_carry_the_torso_off(
    portrait: tuple[np.ndarray, np.ndarray],
) -> None:
    """A textured hand (more corners than the striped shirt has) sweeps across the chest,
    bobbing up and down. Re-seeded corners land on it; they only get a say in the fit
    after agreeing with the torso for a while, so the still performer stays still (before
    that rule the torso followed the hand 380 px across the frame)."""
    frame, points = portrait
    rng = np.random.default_rng(1)
    hand = cv2.GaussianBlur(rng.integers(60, 230, (140, 110, 3)).astype(np.uint8), (5, 5), 0)
    chin = int(points[topology.CHIN, 1])
    tracker = torso.TorsoTracker(24)
    for i in range(96):
        covered = frame.copy()
        x, y = -110 + 5 * i, int(chin + 40 + 20 * math.sin(i / 6))
        cols = slice(max(0, x), min(SIZE[0], x + 110))
        if cols.stop > cols.start:
            covered[y : y + 140, cols] = hand[:, cols.start - x : cols.stop - x]
        motion = tracker(covered, points)
        assert motion is not None
        assert np.abs(motion.shift).max() < 1.0 and abs(motion.angle) < 0.3
    assert tracker.reseeds > 0  # the hand did cover and uncover points


def _torso_target(points: np.ndarray, body: torso.TorsoMotion | None, **options: bool) -> np.ndarray:
    """The character's torso affine when the performer (``points``, at rest) moves their
    torso by ``body``; the character is the performer's own face at twice the size."""
    model = retarget.DriverModel(points)
    character = points.astype(np.float64) * 2.0
    options = {"body_control": True, **options}
    frame = model.decompose(points, body)
    return retarget.Retargeter(model, intensity=3, **options).target(character, frame).torso


def test_the_characters_shoulders_take_the_torso_motion_in_its_own_proportions(
    portrait: tuple[np.ndarray, np.ndarray],
) -> None:
    _, points = portrait
    chin = points[topology.CHIN, :2].astype(np.float64)
    body = torso.TorsoMotion(shift=np.array([10.0, 4.0]), angle=5.0, scale=1.04, pivot=chin + [0.0, 50.0])
    expected = torso.similarity(1.04, 5.0, 2 * chin + [0.0, 100.0], np.array([20.0, 8.0]))
    np.testing.assert_allclose(_torso_target(points, body), expected, atol=1e-6)
    # A video character takes half of it (as it takes half the head's travel).
    half = torso.similarity(1.02, 2.5, 2 * chin + [0.0, 100.0], np.array([10.0, 4.0]))
    np.testing.assert_allclose(_torso_target(points, body, video=True), half, atol=1e-6)
    # Clamped to what a picture's shoulders survive.
    wild = dataclasses.replace(body, angle=40.0, scale=1.5)
    lin = _torso_target(points, wild)[:, :2]
    assert math.degrees(math.atan2(lin[1, 0], lin[0, 0])) == pytest.approx(retarget.TORSO_ANGLE_MAX)
    assert math.hypot(lin[0, 0], lin[1, 0]) == pytest.approx(retarget.TORSO_SCALE_MAX)


def test_without_body_control_or_a_visible_torso(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    _, points = portrait
    body = torso.TorsoMotion(shift=np.array([10.0, 4.0]), angle=5.0, scale=1.04, pivot=np.zeros(2))
    np.testing.assert_array_equal(_torso_target(points, body, body_control=False), warp.IDENTITY)
    # No torso in the clip: the shoulders take TORSO_FOLLOW of the head's travel (none here).
    np.testing.assert_allclose(_torso_target(points, None), warp.IDENTITY, atol=1e-9)


def test_a_render_moves_the_shoulders_with_the_performers_torso_not_the_head(
    portrait: tuple[np.ndarray, np.ndarray], media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The performer holds their head still and sways their body 20 px to the right: the
    character's shoulders sway right with body control and stay without it, and the
    head stays put either way. (Without the torso followed, a still head kept still
    shoulders whatever the body did.)"""
    frame, points = portrait
    cut = int(points[topology.CHIN, 1] + 0.2 * (points[topology.CHIN, 1] - points[topology.FOREHEAD, 1]))

    def swayed(i: int) -> np.ndarray:
        dx = 20.0 * min(i / 24, 1.0)
        body = cv2.warpAffine(
            frame, np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]]), SIZE, borderMode=cv2.BORDER_REFLECT
        )
        out = frame.copy()
        out[cut:] = body[cut:]
        return out

    clip = clips.encode(
        tmp_path / "sway.mp4", (swayed(i) for i in range(3 * 24 + 6)), SIZE, 24, {"crf": "14"}
    )
    outputs = {}
    for body_control in (True, False):
        outputs[body_control] = tmp_path / f"body-{body_control}.mp4"
        engine.render(
            engine.RenderRequest(
                character_path=media / "character_photo.jpg",
                character_type="image",
                reference_path=clip,
                output_path=outputs[body_control],
                ratio="960:960",
                body_control=body_control,
            )
        )
    last = {k: list(clips.frames(v, 0.5))[-1] for k, v in outputs.items()}
    with landmarks.FaceTracker(video=False) as tracker:
        face = tracker.detect(last[False])
    assert face is not None
    chin = int(face[topology.CHIN, 1])
    grey = {k: cv2.cvtColor(v, cv2.COLOR_BGR2GRAY).astype(np.float32) for k, v in last.items()}
    body_shift, _ = cv2.phaseCorrelate(grey[False][chin + 40 :], grey[True][chin + 40 :])
    assert body_shift[0] > 3.0 and abs(body_shift[1]) < 1.5  # right, at half size
    x0, x1 = (int(v) for v in np.percentile(face[:468, 0], [0, 100]))
    box = (slice(int(face[topology.FOREHEAD, 1]), chin), slice(x0, x1))
    head_shift, _ = cv2.phaseCorrelate(grey[False][box], grey[True][box])
    assert np.abs(head_shift).max() < 1.0  # the shoulders moved 12 px


def test_the_driver_stream_follows_the_torso_only_with_body_control(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Without body control nothing uses the torso, so it is not tracked (about 3 ms a
    frame saved on the driver thread)."""
    from service.engine import driver

    clip = clips.cut(media / "driving_talking_portrait.mp4", tmp_path / "portrait.mp4", 0.0, 1.0, size=SIZE)
    with_body = list(driver.stream(clip, 24, 24, body=True))
    without = list(driver.stream(clip, 24, 24, body=False))
    assert all(s.torso is not None for s in with_body)
    assert all(s.torso is None for s in without)
    assert all(np.array_equal(a.points, b.points) for a, b in zip(with_body, without, strict=True))


def _animated(
    picture: pathlib.Path,
    ratio: tuple[int, int] = (1280, 720),
    *,
    body: tuple[float, float] = (0.0, 0.0),
    head: tuple[float, float] = (0.0, 0.0),
    with_rig: rig.Rig | None = None,
) -> tuple[character.StillCharacter, character.CharacterFrame, np.ndarray]:
    """``picture`` framed at ``ratio`` with its torso moved by ``body`` px and its head
    (face and all) by ``head``, warped by ``with_rig`` instead of its own rig if given:
    (the still character, its frame, the output)."""
    still = character.StillCharacter(picture, *ratio)
    cf = still.frame if with_rig is None else dataclasses.replace(still.frame, rig=with_rig)
    chin = cf.points[topology.CHIN, :2].astype(np.float64)
    points = cf.points.copy()
    points[:, :2] += np.float32(head)
    target = retarget.TargetFace(
        points=points,
        head=np.array([[1.0, 0.0, head[0]], [0.0, 1.0, head[1]]]),
        gaze_px=np.zeros((2, 2)),
        torso=torso.similarity(1.0, 0.0, chin, np.array(body)),
    )
    return still, cf, pipeline._animate(cf, target, warp.Warper(pipeline.MAP_DOWNSAMPLE), still.window)


def _holding_nothing(held: rig.Rig) -> rig.Rig:
    """The same rig as ``held``, its edges holding nothing."""
    return rig.Rig(
        held.source, held.width, held.height, held.person_box, picture=held.picture, edges=(False,) * 4
    )


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_the_pictures_bottom_edge_holds_a_lifted_body(media: pathlib.Path) -> None:
    """A body lifted 40 px would uncover what the picture does not show below its bottom
    edge: the warp repeated the edge's last row up the frame as streaks, and on a picture
    with bands above and below it, the band's blur showed between the body and the
    picture's edge. The lift fades out toward the edge instead, from no higher than the
    chin."""
    _, cf, out = _animated(media / "character_photo.jpg", body=(0.0, -40.0))
    x0, _, x1, _ = cf.rig.person_box
    cols = slice(x0 + 20, x1 - 20)
    # The bottom rows vary from row to row as the picture's do (streaks: not at all).
    variation = {
        name: np.abs(np.diff(_grey(image)[-20:, cols], axis=0)).mean()
        for name, image in (("out", out), ("picture", cf.canvas))
    }
    assert variation["out"] > 0.6 * variation["picture"], variation
    # Above the body, and the face itself, move as they would with no edge to hold them.
    chin = cf.points[topology.CHIN, :2].astype(np.float64)
    lifted = retarget.TargetFace(
        points=cf.points,
        head=np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -30.0]]),
        gaze_px=np.zeros((2, 2)),
        torso=torso.similarity(1.0, 0.0, chin, np.array([0.0, -40.0])),
    )
    free = _holding_nothing(cf.rig)
    held, loose = cf.rig.shapes(lifted)[0], free.shapes(lifted)[0]
    n = len(cf.rig.background)
    np.testing.assert_array_equal(held[n:], loose[n:])
    # (The body starts a tenth of the face's height above the chin: ``Rig._torso_w``.)
    above = (cf.rig.src_all[cf.rig.background][..., 1] < chin[1] - 0.1 * cf.rig.face_height).all(axis=1)
    np.testing.assert_array_equal(held[:n][above], loose[:n][above])
    assert not np.array_equal(held[:n], loose[:n])

    still, cf, out = _animated(media / "character_photo.jpg", (720, 1280), body=(0.0, -40.0))
    assert still.window is not None
    ix0, _, ix1, iy1 = still.window.inner
    above_edge = (slice(iy1 - 30, iy1), slice(ix0 + 20, ix1 - 20))
    # The body reaches the picture's bottom edge, as in the picture (before: 39 off).
    assert np.abs(_grey(out)[above_edge] - _grey(cf.canvas)[above_edge]).mean() < 8


def test_the_pictures_side_edge_holds_a_body_moving_away_from_it(media: pathlib.Path) -> None:
    """The photo framed at 1280x720 has bands beside it, and its hair and shoulder reach
    its left edge: a body moved 40 px right kept the band's blur and the plate in the
    strip it left there; the shift now fades out toward the edge."""
    still, cf, out = _animated(media / "character_photo.jpg", body=(40.0, 0.0))
    assert still.window is not None
    ix0 = still.window.inner[0]
    strip = (slice(int(cf.points[topology.CHIN, 1]) + 20, 720), slice(ix0, ix0 + 30))
    assert np.abs(_grey(out)[strip] - _grey(cf.canvas)[strip]).mean() < 15  # before: 33


def test_the_pictures_top_edge_holds_hair_it_cuts(media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A picture cropped through the hair, as a close selfie often is: a head moving
    down 40 px repeated the top edge's row down the frame as streaks. The hair above the
    forehead now stretches instead, the top edge held; the face moves whole, and so does
    hair the top edge does not cut."""
    crop = cv2.imread(str(media / "character_photo.jpg"))
    h = crop.shape[0]
    cv2.imwrite(str(tmp_path / "cropped.jpg"), crop[int(0.2 * h) : int(0.85 * h)])
    _, cf, out = _animated(tmp_path / "cropped.jpg", head=(0.0, 40.0))
    x0, x1 = (int(v) for v in np.percentile(cf.points[:468, 0], [0, 100]))
    middle = slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4)
    assert cf.mask[:5, middle].mean() > 0.9  # the hair above the forehead is cut by the edge
    top = (slice(0, 20), middle)
    variation = {
        name: np.abs(np.diff(_grey(image)[top], axis=0)).mean()
        for name, image in (("out", out), ("picture", cf.canvas))
    }
    assert variation["out"] > 0.5 * variation["picture"], variation
    # The face itself moved the whole 40 px.
    eyes = slice(int(cf.points[topology.FOREHEAD, 1]) + 60, int(cf.points[topology.CHIN, 1]) - 60)
    (_, dy), _ = cv2.phaseCorrelate(_grey(cf.canvas)[eyes, x0:x1], _grey(out)[eyes, x0:x1])
    assert dy == pytest.approx(40, abs=2)
    # Hair clear of the top edge (the uncropped photo's) moves as with no edge to hold it.
    _, cf, out = _animated(media / "character_photo.jpg", head=(0.0, 40.0))
    free = _holding_nothing(cf.rig)
    _, _, loose = _animated(media / "character_photo.jpg", head=(0.0, 40.0), with_rig=free)
    above_chin = (slice(0, int(cf.points[topology.CHIN, 1])), slice(None))
    np.testing.assert_array_equal(out[above_chin], loose[above_chin])


def test_a_close_up_shows_neither_band_nor_streaks_where_it_moves_from_an_edge(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A close-up cut at the forehead and at both cheeks' hair, framed at 720x1280 (bands
    above and below). The head moving down 40 px showed the band's blur across the
    forehead's top rows, and moving 40 px sideways, the hair it left at the side edge
    smeared in streaks (the edge's column repeated, and the plate's fill where the mask
    followed): what moves away from an edge is stretched beside it instead
    (``warp.keep_within``)."""
    photo = cv2.imread(str(media / "character_photo.jpg"))
    cv2.imwrite(str(tmp_path / "close.png"), photo[205:, 110:410])
    still, cf, out = _animated(tmp_path / "close.png", (720, 1280), head=(0.0, 40.0))
    assert still.window is not None
    x0, y0, x1, _ = still.window.inner
    top = (slice(y0, y0 + 12), slice(x0 + 100, x1 - 100))
    # The top rows are the picture's own, stretched (before: the band, 50 grey levels off).
    assert np.abs(_grey(out)[top] - _grey(cf.canvas)[top]).mean() < 10

    _, cf, out = _animated(tmp_path / "close.png", (720, 1280), head=(-40.0, 0.0))
    side = (slice(y0 + 100, y0 + 500), slice(x1 - 30, x1))
    # Along the right edge the hair varies from column to column (streaks: hardly at
    # all; before, 0.11 of the picture's variation, now 0.27).
    variation = {
        name: np.abs(np.diff(_grey(image)[side], axis=1)).mean()
        for name, image in (("out", out), ("picture", cf.canvas))
    }
    assert variation["out"] > 0.2 * variation["picture"], variation


@pytest.mark.parametrize("crop", [(205, 110, 410, 120), (200, 0, 512, 160)])
def test_where_the_picture_cuts_the_head_its_edge_slides_with_the_head(
    media: pathlib.Path, tmp_path: pathlib.Path, crop: tuple[int, int, int, int]
) -> None:
    """A close-up cut at the forehead, framed at 720x1280 (a band above). The rig's
    points on that edge stood still while the head's rings beside them moved: a head
    moving 30 px sideways sheared the hair along the edge into a zigzag (patches of the
    top rows moved 11 px here, 18 or 24 px there). Those within the head's ring 2 now
    slide along the edge with the head."""
    top, left, right, first = crop  # (the first column of the head's)
    photo = cv2.imread(str(media / "character_photo.jpg"))
    cv2.imwrite(str(tmp_path / "close.png"), photo[top:, left:right])
    still, cf, out = _animated(tmp_path / "close.png", (720, 1280), head=(30.0, 0.0))
    assert still.window is not None
    y0 = still.window.inner[1]
    picture, moved = _grey(cf.canvas), _grey(out)
    shifts = []
    for x in range(first, 600, 40):
        patch = picture[y0 + 2 : y0 + 14, x - 16 : x + 16]
        found = cv2.matchTemplate(moved[y0 + 2 : y0 + 14, x - 56 : x + 56], patch, cv2.TM_SQDIFF_NORMED)
        shifts.append(int(np.argmin(found[0])) - 40)
    assert all(abs(s - 30) <= 2 for s in shifts), shifts
