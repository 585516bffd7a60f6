"""Glasses on a character: found by their bridge, their rims found along their line past
each eye, and a rim held where the head alone takes it over a shutting eye, instead of
bent with the lid and taken for lashes by the lids' painting."""

from __future__ import annotations

import collections
import copy
import dataclasses
import itertools
import pathlib

import numpy as np
import pytest

from service.engine import assets, character, glasses, pipeline, retarget, topology, video, warp
from tests.engine import clips

EYES = topology.EYES


@pytest.fixture(scope="module")
def wearer(media: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The talking portrait's performer, who wears thin-rimmed glasses: its frame at 2 s
    as a still (``bench/fidelity.py``'s derived row)."""
    import cv2

    last = collections.deque(video.iter_frames(media / "driving_talking_portrait.mp4", 24, 49), maxlen=1)
    still = tmp_path_factory.mktemp("glasses") / "wearer.jpg"
    cv2.imwrite(str(still), last[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return still


def _worn(image: np.ndarray) -> bool:
    points = character.find_face(image)
    assert points is not None
    return glasses.worn(image, points)


def _draw_glasses(image: np.ndarray, points: np.ndarray, bridge: bool) -> np.ndarray:
    """``image`` with a pair of thin dark rims drawn around the eyes (and their bridge)."""
    import cv2

    out = image.copy()
    centres = [points[eye.ring, :2].mean(axis=0) for eye in EYES]
    distance = float(np.linalg.norm(centres[1] - centres[0]))
    thick = max(2, round(0.025 * distance))
    for centre in centres:
        half = np.array([0.34, 0.26]) * distance
        x0, y0 = np.round(centre - half).astype(int)
        x1, y1 = np.round(centre + half).astype(int)
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), (40, 40, 45), thick, cv2.LINE_AA)
    if bridge:
        inner = [
            np.round(c + [s * 0.34 * distance, -0.12 * distance]).astype(int)
            for c, s in zip(centres, (1, -1), strict=True)
        ]
        cv2.line(out, tuple(int(v) for v in inner[0]), tuple(int(v) for v in inner[1]), (40, 40, 45), thick)
    return out


def test_glasses_are_found_by_their_bridge(media: pathlib.Path, wearer: pathlib.Path) -> None:
    """A pair of glasses shows its bridge across the nose between the eyes: the
    performer's thin-rimmed pair, a pair drawn on the shared photo. Bare faces (the
    shared photo, the cartoon, the expressive performer) have none, and rims drawn
    without their bridge are not taken for glasses either."""
    assert _worn(assets.load_image(wearer))
    for name in ("character_photo.jpg", "character_cartoon.jpg"):
        assert not _worn(assets.load_image(media / name)), name
    expressive = next(iter(video.iter_frames(media / "driving_expressive.mp4", 24, 1)))
    assert not _worn(expressive)
    photo = assets.load_image(media / "character_photo.jpg")
    points = character.find_face(photo)
    assert points is not None
    assert glasses.worn(_draw_glasses(photo, points, bridge=True), points)
    assert not glasses.worn(_draw_glasses(photo, points, bridge=False), points)


def _eye_box(lashes_too: bool, rim: bool = True, thick: int = 2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A grey box around a drawn eye (80x70, the eye 44 px wide): skin, the eye's dark
    opening, a lash line along its top with lashes standing up from it, a crease above,
    and (``rim``) a rim's thin line across the whole box, sloping a little and dipping
    into the lash line's band. Returns it and the masks ``find_rim`` is given."""
    import cv2

    h, w = 70, 80
    grey = np.full((h, w), 175, np.uint8)
    xs = np.arange(w, dtype=np.float64)
    lid = lambda x: 40 - 9 * np.sin(np.pi * np.clip((x - 18) / 44, 0, 1))  # noqa: E731
    low = lambda x: 40 + 6 * np.sin(np.pi * np.clip((x - 18) / 44, 0, 1))  # noqa: E731
    eye_x = np.arange(18, 63, dtype=np.float64)
    outline = np.vstack([np.stack([eye_x, lid(eye_x)], 1), np.stack([eye_x[::-1], low(eye_x[::-1])], 1)])
    cv2.fillPoly(grey, [np.round(outline).astype(np.int32)], (60,))
    cv2.polylines(grey, [np.round(np.stack([eye_x, lid(eye_x) - 1], 1)).astype(np.int32)], False, (45,), 2)
    if lashes_too:
        for x in range(20, 61, 3):
            cv2.line(grey, (x, int(lid(x)) - 1), (x + 1, int(lid(x)) - 7), (70,), 1)
    crease_x = np.arange(24, 58, dtype=np.float64)
    crease = np.stack([crease_x, lid(crease_x) - 9], 1)
    cv2.polylines(grey, [np.round(crease).astype(np.int32)], False, (130,), 1, cv2.LINE_AA)
    rim_row = 24 + 0.08 * xs + 0.002 * (xs - 40) ** 2
    if rim:
        cv2.polylines(grey, [np.round(np.stack([xs, rim_row], 1)).astype(np.int32)], False, (50,), thick)
    opening = np.zeros((h, w), np.uint8)
    cv2.fillPoly(opening, [np.round(outline).astype(np.int32)], (1,))
    band = np.vstack([np.stack([eye_x, lid(eye_x) - 4], 1), np.stack([eye_x[::-1], low(eye_x[::-1])], 1)])
    lashes = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lashes, [np.round(band).astype(np.int32)], (1,))
    return grey, {"opening": opening > 0, "lashes": lashes > 0, "rim": rim_row}


def test_a_rim_is_found_along_its_line_not_in_the_lashes_or_the_crease() -> None:
    """Past an eye, a rim is a thin line across the whole box, near one smooth curve; a
    lash line, standing lashes and a crease stop short of the box's sides, and a band
    thicker than a rim (a brow's edge, a shadow) is no rim."""
    import cv2

    grey, masks = _eye_box(lashes_too=True)
    rim = glasses.find_rim(grey, (100, 200), 44.0, masks["opening"], masks["lashes"])
    assert rim is not None
    xs = np.arange(2, 78, dtype=np.float64)
    centre = rim.a + rim.b * (xs + 100) + rim.c * (xs + 100) ** 2 - 200
    assert np.abs(centre - masks["rim"][2:78]).max() < 1.5  # along the drawn line (picture px)
    assert rim.x0 <= 100 + 3 and rim.x1 >= 100 + 76  # across the box
    assert 1.0 <= rim.half <= 4.5  # the 2 px line, a px or two of skin to either side
    # The rim's own pixels are on it; the crease, the lashes and the eye are not.
    at = lambda x, y: rim.at(np.array([x + 100.0]), np.array([y + 200.0]))[0]  # noqa: E731
    assert at(40, masks["rim"][40]) == 1.0 and at(40, masks["rim"][40] + 6) == 0.0
    # A large eye (the same, three times the size) is looked for reduced, the same rim.
    big = glasses.find_rim(
        cv2.resize(grey, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC),
        (300, 600),
        132.0,
        *(
            cv2.resize(masks[k].astype(np.uint8), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST) > 0
            for k in ("opening", "lashes")
        ),
    )
    assert big is not None
    big_xs = 3 * xs + 1
    big_centre = big.a + big.b * (big_xs + 300) + big.c * (big_xs + 300) ** 2 - 600
    assert np.abs(big_centre - (3 * masks["rim"][2:78] + 1)).max() < 3 * 2.0
    assert big.x0 <= 300 + 9 and big.x1 >= 300 + 228 and 3.0 <= big.half <= 13.5
    for lashes_too in (True, False):
        bare, bare_masks = _eye_box(lashes_too, rim=False)
        assert glasses.find_rim(bare, (0, 0), 44.0, bare_masks["opening"], bare_masks["lashes"]) is None
    thick, thick_masks = _eye_box(lashes_too=True, thick=9)
    assert glasses.find_rim(thick, (0, 0), 44.0, thick_masks["opening"], thick_masks["lashes"]) is None


def _shut_target(points: np.ndarray) -> retarget.TargetFace:
    shut = points.copy()
    for eye in EYES:
        mid = points[eye.lower] + retarget.EYE_CLOSE_POINT * (points[eye.upper] - points[eye.lower])
        shut[eye.upper], shut[eye.lower] = mid, mid
    return retarget.TargetFace(points=shut, head=warp.IDENTITY, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY)


def _rims_held(cf: character.CharacterFrame) -> None:
    """Shut both eyes of ``cf`` (a wearer's frame): each rim past an eye shows where the
    picture has it (the head did not move), whole; taken for glasses-free lids, it is
    bent with the lid and broken; open, nothing changes."""
    import cv2

    assert cf.shut_eyes is not None and cf.shut_eyes.glasses
    bare = copy.copy(cf.shut_eyes)
    bare.glasses = False
    without = dataclasses.replace(cf, shut_eyes=bare)
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)
    shut = _shut_target(cf.points)
    grey = {
        name: cv2.cvtColor(pipeline._animate(frame, shut, warper), cv2.COLOR_BGR2GRAY).astype(np.float64)
        for name, frame in (("with", cf), ("without", without))
    }
    picture = cv2.cvtColor(cf.canvas, cv2.COLOR_BGR2GRAY).astype(np.float64)
    for lid in cf.shut_eyes.eyes:
        rim = cf.shut_eyes._rim(cf.canvas, cf.points, lid)
        assert rim is not None, lid.eye
        eye = EYES[lid.eye]
        corners = cf.points[list(eye.corners), 0]
        # The rim's darkest row, column by column, across the eye (its middle 80 %).
        lo, hi = corners.min(), corners.max()
        xs = np.arange(int(lo + 0.1 * (hi - lo)), int(hi - 0.1 * (hi - lo)))
        centre = np.round(rim.a + rim.b * xs + rim.c * xs * xs).astype(int)
        rows = centre[None, :] + np.arange(-3, 4)[:, None]
        seen = {name: image[rows, xs].min(axis=0) for name, image in grey.items()}
        own = picture[rows, xs].min(axis=0)
        kept, lost = np.abs(seen["with"] - own), np.abs(seen["without"] - own)
        assert kept.mean() < 5 and (kept > 15).mean() < 0.1, lid.eye  # whole, where it was
        assert (lost > 15).mean() > 0.5, lid.eye  # bent with the lid, or taken off
    # Open, the lids and the rims are as the warp leaves them.
    still = retarget.TargetFace(
        points=cf.points, head=warp.IDENTITY, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY
    )
    assert np.array_equal(pipeline._animate(cf, still, warper), pipeline._animate(without, still, warper))


def test_a_stills_rims_are_held_over_its_shut_eyes(wearer: pathlib.Path) -> None:
    _rims_held(character.StillCharacter(wearer, 1280, 720).frame)


def test_a_videos_rims_are_held_over_its_shut_eyes(media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A character video of a wearer: its lids (made from the first frame) find each
    frame's rims in that frame."""
    clip = clips.cut(media / "driving_talking_portrait.mp4", tmp_path / "wearer.mp4", 2.0, 1.0, audio=False)
    frames = list(itertools.islice(character.VideoCharacter(clip, 1280, 720, 6, 24).frames(), 6))
    assert frames[0].shut_eyes is not None and frames[0].shut_eyes.glasses
    _rims_held(frames[-1])


def test_the_lids_of_a_face_without_glasses_are_as_they_were(media: pathlib.Path) -> None:
    """The shared photo wears no glasses: its lids never look for a rim."""
    cf = character.StillCharacter(media / "character_photo.jpg", 1280, 720).frame
    assert cf.shut_eyes is not None and not cf.shut_eyes.glasses
    pipeline._animate(cf, _shut_target(cf.points), warp.Warper(pipeline.MAP_DOWNSAMPLE))
    assert cf.shut_eyes._rims == {}
