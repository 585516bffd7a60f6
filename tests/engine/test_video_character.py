"""A character video (analysed on alternate frames, rigs reused) and the render process."""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest

from service import engine
from service.engine import (
    assets,
    character,
    driver,
    eyeballs,
    landmarks,
    mouth,
    pipeline,
    retarget,
    rig,
    segmentation,
    topology,
    warp,
)
from service.engine.character import _Look
from tests.engine import clips
from tests.engine.conftest import video_request


def _look(value: float, seen: tuple[float, float] | None = (0.3, 0.3)) -> _Look:
    points = np.full((478, 3), value, dtype=np.float32)
    mask = np.full((4, 4), value, dtype=np.float32)
    opening = None if seen is None else np.array(seen)
    return _Look(opening=opening, points=points, mask=mask, box=(0, 0, int(value), 4))


def test_an_in_between_frame_interpolates_the_face_and_takes_the_nearer_mask() -> None:
    before, after = _look(10.0), _look(20.0)
    early = _Look.between(before, after, 0.25)
    assert early is not None
    assert np.allclose(early.points, 12.5)
    assert early.mask is before.mask and early.box == before.box
    late = _Look.between(before, after, 0.75)
    assert late is not None and late.mask is after.mask


def test_an_eye_closing_on_either_side_counts_as_closing_in_the_frames_between() -> None:
    """A blink shuts within a frame or two: the frames between an open and a shut
    analysed frame are already closing, so each eye takes the smaller opening."""
    between = _Look.between(_look(10.0, (0.30, 0.05)), _look(20.0, (0.06, 0.31)), 0.5)
    assert between is not None and between.opening is not None
    assert np.allclose(between.opening, (0.06, 0.05))


def test_an_in_between_frame_keeps_the_one_detection_it_has() -> None:
    lost = _Look.between(_look(10.0, (0.3, 0.2)), _look(20.0, seen=None), 0.5)
    assert lost is not None and lost.opening is not None and np.allclose(lost.opening, (0.3, 0.2))
    appears = _look(20.0)
    assert _Look.between(None, appears, 0.5) is appears  # no face before: the one after
    assert _Look.between(None, None, 0.5) is None


def test_a_character_video_is_analysed_on_alternate_frames(
    short_character_video: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"tracked": 0, "segmented": 0}
    detect, segment = landmarks.FaceTracker.detect, segmentation.Segmenter.mask

    def counted_detect(self: landmarks.FaceTracker, bgr: np.ndarray) -> np.ndarray | None:
        calls["tracked"] += 1
        return detect(self, bgr)

    def counted_mask(
        self: segmentation.Segmenter, bgr: np.ndarray, face: np.ndarray | None = None
    ) -> np.ndarray:
        calls["segmented"] += 1
        return segment(self, bgr, face)

    count = 30
    char = character.VideoCharacter(short_character_video, 640, 360, count, 24)
    monkeypatch.setattr(landmarks.FaceTracker, "detect", counted_detect)
    monkeypatch.setattr(segmentation.Segmenter, "mask", counted_mask)
    frames = list(char.frames())
    assert len(frames) == count
    analysed = len(range(0, count, character.ANALYSE_EVERY)) + 1  # and the last frame
    assert calls["tracked"] == calls["segmented"] == analysed
    assert all(f.rig is not None for f in frames)
    # Frames between two analysed ones get faces between theirs.
    step = character.ANALYSE_EVERY
    for k in range(0, count - step, step):
        lo = np.minimum(frames[k].points, frames[k + step].points)[:, :2]
        hi = np.maximum(frames[k].points, frames[k + step].points)[:, :2]
        for between in frames[k + 1 : k + step]:
            inside = (between.points[:, :2] >= lo - 1e-3) & (between.points[:, :2] <= hi + 1e-3)
            assert inside.mean() > 0.95  # (re-opened eyes may move a few lid points)


def test_a_short_character_video_plays_back_and_forth_from_the_frames_it_kept(
    short_character_video: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its end the video plays backwards (no cut back to its opening shot), from
    its kept frames: nothing is decoded, tracked or segmented again."""
    from service.engine import video

    count = 80  # the clip has 36 frames at 24 fps
    own = len(list(video.iter_frames(short_character_video, 24, count, hold=False)))
    assert own == 36
    char = character.VideoCharacter(short_character_video, 640, 360, count, 24, duration_s=1.5)
    calls = {"tracked": 0}
    detect = landmarks.FaceTracker.detect

    def counted_detect(self: landmarks.FaceTracker, bgr: np.ndarray) -> np.ndarray | None:
        calls["tracked"] += 1
        return detect(self, bgr)

    monkeypatch.setattr(landmarks.FaceTracker, "detect", counted_detect)
    frames = list(char.frames())
    assert len(frames) == count
    assert calls["tracked"] <= len(range(0, own, character.ANALYSE_EVERY)) + 2  # the first pass only
    played = [own - 2 - k for k in range(own - 1)] + [1 + k for k in range(count - 2 * own + 1)]
    assert len(played) == count - own
    for shown, index in zip(frames[own:], played, strict=True):
        kept = frames[index]
        assert np.abs(shown.canvas.astype(int) - kept.canvas).mean() < 2.0  # JPEG-kept
        np.testing.assert_array_equal(shown.points, kept.points)
        assert np.abs(shown.mask - kept.mask).mean() < 0.01
        assert shown.rig is not None and shown.rig.person_box == kept.rig.person_box


def test_a_character_videos_eyeballs_turned_by_the_gaze_are_drawn_from_each_frames_own_eye(
    short_character_video: pathlib.Path,
) -> None:
    """Every frame of a character video, played back from its kept frames too, carries
    its own eyes out past their lids (``eyeballs.Eyeballs``): shifted by the gaze, the
    video's eyes showed their lid line inside the eye. At rest nothing changes, and an
    eye is carried out only once it is drawn shifted."""
    import dataclasses

    char = character.VideoCharacter(short_character_video, 640, 360, 60, 24, duration_s=1.5)
    frames = list(char.frames())
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)
    for cf in (frames[10], frames[50]):  # its own, and one played back
        assert cf.rig is not None and cf.eyeballs is not None
        plain = dataclasses.replace(cf, eyeballs=None)
        for gaze, differs in ((0.0, False), (6.0, True)):
            target = retarget.TargetFace(
                points=cf.points,
                head=warp.IDENTITY,
                gaze_px=np.full((2, 2), (gaze, 0.0)),
                torso=warp.IDENTITY,
            )
            changed = pipeline._animate(cf, target, warper) != pipeline._animate(plain, target, warper)
            assert changed.any() == differs
            if not differs:
                assert not cf.eyeballs._carried  # nothing made for eyes at rest


def test_a_character_video_long_enough_keeps_no_frames(
    short_character_video: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(image: np.ndarray) -> np.ndarray:
        raise AssertionError("a frame was compressed for playing back")

    monkeypatch.setattr(character, "_compress", refuse)
    char = character.VideoCharacter(short_character_video, 640, 360, 30, 24, duration_s=1.5)
    assert len(list(char.frames())) == 30
    # A video stream whose header overstates its own length: its last frame is held.
    char = character.VideoCharacter(short_character_video, 640, 360, 40, 24, duration_s=2.0)
    frames = list(char.frames())
    assert len(frames) == 40 and all(f is frames[35] for f in frames[36:])


def test_a_video_a_little_shorter_than_the_render_keeps_only_the_frames_played_back(
    short_character_video: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compress = character._compress
    canvases: list[int] = []

    def counted(image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            canvases.append(1)
        return compress(image)

    monkeypatch.setattr(character, "_compress", counted)
    count = 40  # 36 frames of its own, then 4 played back: frames 34 down to 31
    frames = list(
        character.VideoCharacter(short_character_video, 640, 360, count, 24, duration_s=1.5).frames()
    )
    assert len(frames) == count
    assert len(canvases) == 36 - (35 - 4 - 24)  # from frame 35 - 4 - a second's margin on
    for shown, index in zip(frames[36:], [34, 33, 32, 31], strict=True):
        np.testing.assert_array_equal(shown.points, frames[index].points)


def test_a_video_of_unknown_length_keeps_its_frames_and_plays_them_back(
    short_character_video: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.engine import video

    monkeypatch.setattr(video, "stream_seconds", lambda path: None)
    frames = list(character.VideoCharacter(short_character_video, 640, 360, 60, 24).frames())
    assert len(frames) == 60
    for shown, index in zip(frames[36:], range(34, 10, -1), strict=True):
        np.testing.assert_array_equal(shown.points, frames[index].points)


def test_the_reel_lets_go_of_frames_the_turn_back_cannot_reach() -> None:
    count, own = 40, 36  # 4 frames played back: 34 down to 31
    reel = character._Reel(64, 36, count)
    shown = []
    for i in range(own):
        canvas = np.full((36, 64, 3), i * 7 % 256, np.uint8)
        frame = character._passthrough(canvas)
        reel.keep(frame)
        shown.append(frame)
    assert len(reel) == own and reel.kept == own - (2 * own - 1 - count)  # frames 31-35
    for index in (34, 33, 32, 31):
        again = reel.frame(index, shown[-1])
        assert np.abs(again.canvas.astype(int) - shown[index].canvas).max() <= 2


def test_playing_back_and_forth_turns_at_each_end_without_showing_it_twice() -> None:
    assert list(itertools.islice(character._bounce(4), 9)) == [2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert list(itertools.islice(character._bounce(2), 4)) == [0, 1, 0, 1]
    assert list(itertools.islice(character._bounce(1), 3)) == [0, 0, 0]


@pytest.fixture(scope="module")
def face(media: pathlib.Path) -> np.ndarray:
    found = character.find_face(assets.load_image(media / "character_photo.jpg"))
    assert found is not None
    return found


def test_a_rig_reuses_its_neighbours_triangulation_while_it_still_fits(face: np.ndarray) -> None:
    width, height = int(face[:, 0].max() * 1.5), int(face[:, 1].max() * 1.5)
    first = rig.Rig(face, width, height)
    moved = rig.Rig(face + (3.0, -2.0, 0.0), width, height, like=first)
    assert moved.background is not first.background
    assert np.array_equal(moved.background, first.background)  # same triangles, not recomputed
    assert moved._mesh is first._mesh
    squashed = face * (1.0, 0.3, 1.0) + (0.6 * width, 0.0, 0.0)
    far = rig.Rig(squashed, width, height, like=first)
    assert far._mesh is not first._mesh  # triangles flipped or thinned: triangulated afresh
    # Either way every background triangle keeps a positive share of its area.
    for r in (moved, far):
        tri = r.src_all[r.background]
        a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        assert (np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) > 0).all()


def test_landmarks_are_read_from_the_wire_encoding_or_attribute_by_attribute() -> None:
    from mediapipe.framework.formats import landmark_pb2

    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, (478, 3)).astype(np.float32)
    message = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        message.landmark.add(x=x, y=y, z=z)
    assert np.array_equal(landmarks.landmark_array(message), values.astype(np.float64))
    message.landmark[7].visibility = 0.5  # another layout: read field by field
    message.landmark[9].x = 0.0
    expected = values.astype(np.float64)
    expected[9, 0] = 0.0
    assert np.array_equal(landmarks.landmark_array(message), expected)


def test_preloading_caps_the_render_processs_malloc_arenas(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert pipeline._limit_malloc_arenas(pipeline.MALLOC_ARENAS)
    asked: list[int] = []
    monkeypatch.setattr(pipeline, "_limit_malloc_arenas", lambda n: asked.append(n) or True)
    pipeline.preload()
    assert asked == [pipeline.MALLOC_ARENAS]


def test_preloading_builds_opencvs_lab_tables_before_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV builds its Lab tables on the first conversion to Lab (~0.27 s), which the
    drawn-eye search otherwise paid inside a still character's preparation."""
    import cv2

    codes: list[int] = []
    convert = cv2.cvtColor
    monkeypatch.setattr(
        cv2, "cvtColor", lambda image, code, *a: codes.append(code) or convert(image, code, *a)
    )
    pipeline.preload()
    assert cv2.COLOR_BGR2LAB in codes


def test_preloading_keeps_opencv_to_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A render keeps both cores busy with its own threads; OpenCV's pool on top of them
    only cost CPU."""
    import cv2

    asked: list[int] = []
    monkeypatch.setattr(cv2, "setNumThreads", asked.append)
    pipeline.preload()
    assert asked == [pipeline.OPENCV_THREADS] and pipeline.OPENCV_THREADS == 1


def test_a_head_turn_does_not_tilt_the_character(face: np.ndarray) -> None:
    """MediaPipe's depth is not metric: a 3D fit of a turned head leaves a tilt of the
    eye line that must not reach the character as a roll."""
    import math

    neutral = face.astype(np.float64)
    centre = neutral.mean(axis=0)
    turn = math.radians(12)
    true = (neutral - centre) * (1.0, 1.0, 2.5)  # the real head is deeper than reported
    turned = true @ np.array(
        [[math.cos(turn), 0, -math.sin(turn)], [0, 1, 0], [math.sin(turn), 0, math.cos(turn)]]
    )
    driver = turned * (1.0, 1.0, 1 / 2.5) + centre  # pure yaw: no point moves up or down
    model = retarget.DriverModel(neutral)
    frame = model.decompose(driver)
    assert abs(frame.angles[0]) < 0.1  # the eye line barely tilts in the picture: no roll
    levelled = neutral + frame.expression
    assert retarget.eye_line(levelled) == pytest.approx(retarget.eye_line(neutral), abs=0.01)
    target = retarget.Retargeter(model, intensity=3, body_control=True).target(neutral, frame)
    assert retarget.eye_line(target.points) == pytest.approx(retarget.eye_line(neutral), abs=0.05)


def test_smoothing_starts_afresh_when_the_face_jumps(face: np.ndarray) -> None:
    smoother = landmarks.FaceSmoother(8.0, min_cutoff=1.0, beta=2.0)
    for _ in range(5):
        smoother(face)
    nudged = smoother(face + (3.0, 0.0, 0.0))
    assert nudged is not None and 0.0 < float(np.mean(nudged[:, 0] - face[:, 0])) < 3.0  # smoothed
    jumped = face + (200.0, 0.0, 0.0)
    out = smoother(jumped)
    assert out is not None and np.allclose(out, jumped, atol=1e-3)  # a cut: no lag behind
    still, moved = (_Look(None, p, np.zeros(1), (0, 0, 1, 1)) for p in (face, jumped))
    assert character._Look.cut(still, moved) and not character._Look.cut(still, still)


def test_a_face_lost_for_long_is_let_go_and_one_found_again_starts_afresh(face: np.ndarray) -> None:
    smoother = landmarks.FaceSmoother(8.0, min_cutoff=1.0, beta=2.0, hold=2)
    smoother(face)
    assert smoother(None) is not None and smoother(None) is not None  # held: a detector's blink
    assert smoother(None) is None and not smoother.tracking  # let go
    moved = face + (3.0, 0.0, 0.0)
    out = smoother(moved)
    assert out is not None and np.allclose(out, moved, atol=1e-3)  # no glide from where it was


def test_a_character_video_cut_to_black_shows_black_not_the_faces_features(
    tmp_path: pathlib.Path, reference: pathlib.Path, short_character_video: pathlib.Path
) -> None:
    """Half a second of the woman, then black: the face used to be held where it was last
    found for good, and her eyes, lids and lips were painted over the black frames."""
    from service.engine import video

    own = list(itertools.islice(video.iter_frames(short_character_video, 24, 12, hold=False), 12))
    black = np.zeros_like(own[0])
    clip = clips.encode(tmp_path / "cut-to-black.mp4", own + [black] * 72, (640, 360), 24, {"crf": "16"})
    out = tmp_path / "out.mp4"
    engine.render(video_request(clip, reference, out))
    frames = list(clips.frames(out))
    lit = [int((frame > 40).sum()) for frame in frames]
    assert lit[0] > 100_000  # the woman first
    held = round(character.FACE_HOLD_S * 24) + 2 * character.ANALYSE_EVERY
    assert max(lit[12 + held :]) == 0, lit  # then black: nothing painted on it


def test_frames_between_a_cut_take_the_analysis_of_their_own_side(
    media: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A character video that cuts to a shot where the face is elsewhere:
    nothing is interpolated across the cut."""
    import cv2

    from service.engine import video

    picture = cv2.resize(assets.load_image(media / "character_photo.jpg"), (640, 640))
    left = np.zeros((360, 640, 3), np.uint8)
    left[:, :320] = cv2.resize(picture, (320, 360))
    right = np.zeros_like(left)
    right[:, 320:] = left[:, :320]
    shots = [left] * 5 + [right] * 5  # the cut falls between analysed frames 3 and 6

    def fake_frames(path: pathlib.Path, fps: int, count: int, **_: object):  # type: ignore[no-untyped-def]
        for i in range(count):
            yield shots[min(i, len(shots) - 1)].copy()

    monkeypatch.setattr(video, "iter_frames", fake_frames)
    char = character.VideoCharacter(pathlib.Path("cut.mp4"), 640, 360, len(shots), 24)
    frames = list(char.frames())
    xs = np.array([float(f.points[:, 0].mean()) for f in frames])
    assert np.ptp(xs[:5]) < 5 and np.ptp(xs[5:]) < 5, xs  # each side: its own face, at once
    assert xs[5:].min() - xs[:5].max() > 100, xs  # the face moved across the cut


def test_the_character_takes_the_drivers_whole_head_tilt_and_a_video_half_its_turn(face: np.ndarray) -> None:
    """A still character follows the performer's head whole. A video character keeps its
    own motion and takes the performer's tilt whole (it cannot fold the face) but only
    part of a turn out of the picture's plane (``retarget.VIDEO_TURN_GAIN``)."""
    import math

    neutral = face.astype(np.float64)
    centre = neutral[topology.STABLE].mean(axis=0)
    model = retarget.DriverModel(neutral)
    character_face = neutral * 1.5 + (40.0, 10.0, 0.0)

    def moved(rot: np.ndarray, video: bool) -> np.ndarray:
        driver = (neutral - centre) @ rot.T + centre
        retargeter = retarget.Retargeter(model, intensity=3, body_control=True, video=video)
        return retargeter.target(character_face, model.decompose(driver)).points

    def eye_line(points: np.ndarray) -> float:
        a = points[list(topology.RIGHT_EYE_CORNERS), :2].mean(axis=0)
        b = points[list(topology.LEFT_EYE_CORNERS), :2].mean(axis=0)
        return math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))

    tilt = retarget.from_euler(10.0, 0.0, 0.0)
    for video in (False, True):
        assert eye_line(moved(tilt, video)) - eye_line(character_face) == pytest.approx(10.0, abs=0.5)
    turn = retarget.from_euler(0.0, 12.0, 0.0)
    still_turn = np.ptp(moved(turn, False)[:, 0] - character_face[:, 0])
    video_turn = np.ptp(moved(turn, True)[:, 0] - character_face[:, 0])
    assert video_turn == pytest.approx(still_turn * retarget.VIDEO_TURN_GAIN, rel=0.1)


def test_the_mouth_opening_moves_with_the_head_and_the_upper_lip(face: np.ndarray) -> None:
    """The picture's mouth interior stays under the upper lip: a lip that rises beyond the
    head's motion (a pout, a smirk) takes the interior with it, so the opening does not
    show the picture's own upper lip."""
    shaper = rig.Rig(face, 1280, 720)
    head = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])
    moved = face.copy()
    moved[:, :2] += head[:, 2]
    mouth_at = shaper.coarse_shapes + len(topology.RIGHT_EYE_RING) + len(topology.LEFT_EYE_RING)
    middle = list(topology.UPPER_INNER_LIP_MIDDLE)
    for rise in (0.0, 6.0):
        points = moved.copy()
        points[topology.INNER_LIPS, 1] -= rise  # the lips arch up beyond the head
        target = retarget.TargetFace(points=points, head=head, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY)
        _, affines, _ = shaper.shapes(target)
        mouth = affines[mouth_at]
        np.testing.assert_allclose(mouth, affines[mouth_at + len(topology.INNER_LIPS) - 1])  # one affine
        dst = points[middle, :2].mean(axis=0)
        np.testing.assert_allclose(mouth[:, :2] @ dst + mouth[:, 2], face[middle, :2].mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(mouth[:, :2], np.eye(2), atol=1e-9)  # never stretched


def test_the_rest_frame_has_closed_lips_at_their_usual_width_not_a_smile(face: np.ndarray) -> None:
    """The gap between the lips is measured against the mouth's width, which a smile
    stretches: the narrowest gap alone picked a closed-lipped smile, and every other
    frame then drew the character's mouth narrower than its own (a pucker)."""

    def lips(gap: float, wider: float) -> np.ndarray:
        p = face.copy()
        upper, lower = topology.MOUTH_PAIRS[:, 0], topology.MOUTH_PAIRS[:, 1]
        middle = (p[upper] + p[lower]) / 2
        p[upper], p[lower] = middle - [0.0, gap / 2, 0.0], middle + [0.0, gap / 2, 0.0]
        centre = p[topology.OUTER_LIPS, :2].mean(axis=0)
        p[topology.OUTER_LIPS, 0] = centre[0] + (p[topology.OUTER_LIPS, 0] - centre[0]) * wider
        p[topology.INNER_LIPS, 0] = centre[0] + (p[topology.INNER_LIPS, 0] - centre[0]) * wider
        return p

    talking = [lips(12.0, 1.0), lips(9.0, 0.9)]
    neutral = [lips(0.6, 1.0), lips(0.5, 0.98), lips(0.6, 1.03)]
    smile = lips(0.5, 1.3)
    assert mouth.gap(smile) < min(mouth.gap(p) for p in neutral)  # narrowest gap
    rest = driver.at_rest([*talking, smile, *neutral])
    assert any(rest.points is p for p in neutral)
    assert _mouth_width(rest.points) < _mouth_width(smile) * 0.85


def test_the_rest_frame_is_the_most_usual_closed_mouth_not_a_pout_or_a_frown(face: np.ndarray) -> None:
    """A closed mouth is not yet a neutral one: a pout pulled down at one corner (the
    talking portrait's frame 209) or a frown (brows knitted), both at the mouth's usual
    width where the relaxed mouths are a little off it, taken as the rest would move the
    character's lips or brows in every other frame."""
    from service.engine import driver

    rng = np.random.default_rng(5)
    upper, lower = topology.MOUTH_PAIRS[:, 0], topology.MOUTH_PAIRS[:, 1]

    def closed(p: np.ndarray) -> np.ndarray:
        middle = (p[upper] + p[lower]) / 2
        p[upper], p[lower] = middle - [0.0, 0.25, 0.0], middle + [0.0, 0.25, 0.0]
        return p

    def relaxed() -> np.ndarray:
        p = face.copy()
        p[:, :2] += rng.normal(0.0, 0.15, (len(p), 2))  # detector jitter
        return closed(p)

    def talking() -> np.ndarray:
        p = relaxed()
        p[topology.INNER_LIPS[len(topology.INNER_LIPS) // 2 :], 1] += 8.0
        return p

    pout = relaxed()
    lips = np.concatenate([topology.OUTER_LIPS, topology.INNER_LIPS])
    corner = face[topology.MOUTH_OUTER_CORNERS[0], :2]
    pulled = np.exp(-np.sum((face[lips, :2] - corner) ** 2, axis=1) / (2 * 12.0**2))
    pout[lips, 1] += 6.0 * pulled  # one corner pulled down, the width unchanged
    frown = relaxed()
    frown[topology.BROWS, 1] += 5.0
    centre = face[topology.BROWS, 0].mean()
    frown[topology.BROWS, 0] -= 0.15 * (frown[topology.BROWS, 0] - centre)  # knitted
    lip_centre = face[topology.OUTER_LIPS, 0].mean()

    def widened(p: np.ndarray, factor: float) -> np.ndarray:  # a mouth a little off its usual width
        p[lips, 0] = lip_centre + (p[lips, 0] - lip_centre) * factor
        return p

    neutral = [widened(relaxed(), 1.03), widened(relaxed(), 0.97)]
    faces = [pout, frown, *[talking() for _ in range(6)], *neutral]
    rest = driver.at_rest(faces)
    assert any(rest.points is p for p in neutral)


def test_a_character_pictured_with_its_mouth_open_closes_it_with_the_performer(face: np.ndarray) -> None:
    """The performer's expression is taken against their closed-lipped rest: a character
    pictured mouth open (the shared photo) closes it when they do, the jaw rising with
    the lower lip, and opens it again by as much as they open theirs."""
    upper, lower = topology.INNER_LIP_PAIRS[:, 0], topology.INNER_LIP_PAIRS[:, 1]
    opening = float((face[lower, 1] - face[upper, 1]).max())
    assert opening > 8  # the picture's mouth is open
    closed = retarget.close_mouth(face)
    assert np.abs(closed[lower, :2] - closed[upper, :2]).max() < 0.15 * opening  # lips meet
    corners = face[list(topology.MOUTH_CORNERS), 1].mean()
    above = face[:, 1] < corners - 2
    np.testing.assert_array_equal(closed[above], face[above])  # eyes, nose, upper lip stay
    rise = face[:, 1] - closed[:, 1]
    assert rise[topology.CHIN] > 0.8 * opening  # the jaw comes up...
    assert rise[[234, 454]].max() < 0.2 * opening  # ...hinged near the ears
    np.testing.assert_allclose(retarget.close_mouth(closed), closed, atol=0.05 * opening)
    # At the performer's rest the character's lips are closed; opened, they open.
    model = retarget.DriverModel(closed)
    retargeter = retarget.Retargeter(model, intensity=3, body_control=True)
    assert mouth.gap(retargeter.target(face, model.decompose(closed)).points) < 0.05
    assert mouth.gap(retargeter.target(face, model.decompose(face)).points) > 0.1


def _twice_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    return warp.signed_areas(points[:, :2].astype(np.float64)[triangles])


def test_closing_a_pictured_mouth_keeps_the_lower_lip_whole(face: np.ndarray) -> None:
    """The lower lip rises onto the upper one whole, keeping its thickness, and the chin
    rises under it over a longer stretch: closed by each point's depth below the
    corners, the lip was squashed toward the corners to a tenth of its height, and the
    performer's expression then folded it over."""
    closed = retarget.close_mouth(face)
    triangles = topology.mouth_triangles()
    away = ~np.isin(triangles, list(topology.MOUTH_CORNERS)).any(axis=1)  # where the lips meet
    before, after = _twice_areas(face, triangles), _twice_areas(closed, triangles)
    kept = after[away] / before[away]
    assert kept.min() > 0.3
    lower_lip = np.isin(triangles, topology.LOWER_OUTER_LIP).any(axis=1) & away
    assert np.median(after[lower_lip] / before[lower_lip]) > 0.8  # the lip keeps its size


def test_the_performers_expression_does_not_fold_the_characters_lips_over(face: np.ndarray) -> None:
    """A performer's lower lip pressed down past what the character's fuller lip leaves
    room for turned the triangles between lip and chin over (the warp then showed the
    picture's teeth in torn pieces at the lips' corners). Only the folded triangles'
    corners are evened out, toward their mean offset, until nothing faces the other way."""
    triangles = topology.mouth_triangles()
    closed = retarget.close_mouth(face)
    moved = closed.copy()
    moved[17, 1] += 14.0  # the lower lip's middle, pushed down past the point under it
    moved[[13, 14], 1] += 3.0  # the lips' middle, a little
    moved[61, 0] -= 2.0  # a corner, a little

    def folded(points: np.ndarray) -> int:
        return int((_twice_areas(points, triangles) * np.sign(_twice_areas(closed, triangles)) < 0).sum())

    assert folded(moved) > 0
    fixed = moved.copy()
    assert retarget.unfold_mouth(closed, fixed) == folded(moved)
    assert folded(fixed) == 0
    assert 0 < fixed[17, 1] - closed[17, 1] < 14.0  # pressed down less, but still down
    np.testing.assert_array_equal(fixed[61], moved[61])  # the rest as the performer had it
    np.testing.assert_array_equal(fixed[[13, 14]], moved[[13, 14]])
    # The retargeter does it on every frame.
    model = retarget.DriverModel(closed)
    pressed = closed.copy()
    pressed[17, 1] += 14.0
    target = retarget.Retargeter(model, intensity=3, body_control=True).target(face, model.decompose(pressed))
    assert folded(target.points) == 0


def _lips_scaled(points: np.ndarray, share: float) -> np.ndarray:
    """``points`` with each lip ``share`` as thick: its outer edge and the rings inside it
    moved toward its inner edge, column by column (``topology.LIP_COLUMNS``)."""
    columns = topology.LIP_COLUMNS
    out = points.copy()
    for ring in columns[:, :3].T:
        out[ring, :2] = points[columns[:, 3], :2] + share * (points[ring, :2] - points[columns[:, 3], :2])
    return out


def _column_shares(points: np.ndarray, which: slice) -> np.ndarray:
    """Where the ``which`` points of each lip column (``topology.LIP_COLUMNS``) lie across
    the lip, as shares of the way from its inner edge (0) to its outer edge (1)."""
    columns = topology.LIP_COLUMNS
    inner = points[columns[:, 3], :2].astype(np.float64)
    across = points[columns[:, 0], :2] - inner
    return np.stack(
        [
            ((points[ring, :2] - inner) * across).sum(axis=1) / (across**2).sum(axis=1)
            for ring in columns[:, which].T
        ]
    )


def test_a_characters_lips_thin_in_proportion_to_the_performers_not_away(face: np.ndarray) -> None:
    """The performer's expression moves the character's lips by the same offsets, scaled
    to the face, not to the lips: a full-lipped performer pressing their lips to 60 % of
    their thickness took a thin-lipped character's lips to nothing (the cartoon's upper
    lip showed as a dark line). Each lip now keeps at least its own share of the
    performer's, while how far the lips part, and a pout, are the performer's."""
    outer, inner = topology.LIP_THICKNESS_PAIRS.T
    performer = retarget.close_mouth(face)

    def thickness(points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points[outer, :2] - points[inner, :2], axis=1)

    character = _lips_scaled(performer, 0.35)  # lips a third as thick as the performer's
    model = retarget.DriverModel(performer)
    retargeter = retarget.Retargeter(model, intensity=3, body_control=False)
    lips = thickness(retarget.close_mouth(character))
    moving = lips > 1.0

    pressed = retargeter.target(character, model.decompose(_lips_scaled(performer, 0.6))).points
    share = thickness(pressed)[moving] / lips[moving]
    assert (share > 0.5).all() and abs(float(np.median(share)) - 0.6) < 0.02  # as the performer's
    assert mouth.gap(pressed) < 0.01  # still closed

    pout = _lips_scaled(performer, 1.3)
    pouted = retargeter.target(character, model.decompose(pout)).points
    assert (thickness(pouted)[moving] / lips[moving] > 1.3).all()  # the whole offset, not 1.3 x


def test_each_lip_column_runs_from_the_outer_edge_through_its_rings_to_the_inner(face: np.ndarray) -> None:
    """``topology.LIP_COLUMNS``: its ends are the lip outlines' points between the corners,
    in their order, and on a real face each column's rings lie in order across the lip."""
    columns = topology.LIP_COLUMNS
    assert np.array_equal(columns[:, 0], np.delete(topology.OUTER_LIPS, [0, 10]))
    assert np.array_equal(columns[:, 3], np.delete(topology.INNER_LIPS, [0, 10]))
    assert len(set(columns.ravel().tolist())) == columns.size
    share = _column_shares(face, slice(None))
    assert (share[0] > share[1]).all() and (share[1] > share[2]).all() and (share[2] > share[3]).all()


def test_a_lips_inner_rings_keep_their_share_of_it_and_nothing_folds(face: np.ndarray) -> None:
    """The mesh has two rings inside each lip, which the performer's offsets moved as far
    as on the performer's fuller lips: on a thin-lipped character pressing its lips they
    crossed to the inner edge, and the warp squeezed the lip's colour into a sliver (the
    cartoon's lower lip showed as skin). Each column of the lip keeps its rings where
    the character has them, as a share of the lip's thickness now, and no triangle of
    the lips turns over."""
    performer = retarget.close_mouth(face)

    def shares(points: np.ndarray) -> np.ndarray:  # each ring's share, outer edge to inner
        return _column_shares(points, slice(1, 3))

    character = _lips_scaled(performer, 0.35)  # lips a third as thick as the performer's
    model = retarget.DriverModel(performer)
    retargeter = retarget.Retargeter(model, intensity=3, body_control=False)
    closed = retarget.close_mouth(character)
    for press in (0.6, 0.8, 1.3):
        pressed = retargeter.target(character, model.decompose(_lips_scaled(performer, press))).points
        off = np.abs(shares(pressed) - shares(closed))
        assert off.max() < 0.1 and np.median(off) < 0.01, press  # unfolding moves a few a little
        triangles = topology.mouth_triangles()
        before = warp.signed_areas(closed[:, :2].astype(np.float64)[triangles])
        after = warp.signed_areas(pressed[:, :2].astype(np.float64)[triangles])
        assert not ((np.abs(before) > retarget.UNFOLD_MIN_AREA) & (after * np.sign(before) < 0)).any(), press


def test_lips_pressed_past_each_other_meet_halfway_and_parted_lips_are_left(face: np.ndarray) -> None:
    """A performer pressing their lips together moves their inner edges past each other
    by a pixel or two; on the character the two lips then overlapped, and the lip line
    came out as dark and red pixels in turn. Where they cross, both go to where they
    meet, halfway; lips apart are left where they are."""
    upper, lower = topology.INNER_LIP_PAIRS.T
    below_lips = np.unique(np.concatenate([topology.LIP_COLUMNS[9:].ravel(), [topology.CHIN]]))
    performer = retarget.close_mouth(face)
    model = retarget.DriverModel(performer)
    retargeter = retarget.Retargeter(model, intensity=3, body_control=False)

    def raised(by: float) -> np.ndarray:  # the lower lip moved up by ``by`` px
        out = performer.copy()
        out[below_lips, 1] -= by
        return out

    def gaps(points: np.ndarray) -> np.ndarray:
        return points[lower, 1] - points[upper, 1]

    pressed = retargeter.target(performer, model.decompose(raised(3.0))).points
    assert gaps(pressed).min() > -0.05  # they meet, not cross
    parted = retargeter.target(performer, model.decompose(raised(-6.0))).points
    assert gaps(parted).min() > 3.0  # lips apart: untouched by the meeting

    moved = performer.copy()
    moved[lower, 1] = moved[upper, 1] - 2.0  # crossed by 2 px
    moved[lower[:3], 1] = moved[upper[:3], 1] + 4.0  # apart at one end
    before = moved.copy()
    retarget.meet_lips(moved, np.array([0.0, 1.0]))  # down the picture
    assert np.allclose(moved[upper[3:], 1], before[upper[3:], 1] - 1.0, atol=0.05)
    assert np.allclose(moved[lower[3:], 1], moved[upper[3:], 1], atol=0.05)
    assert np.array_equal(moved[upper[:3]], before[upper[:3]]) and np.array_equal(
        moved[lower[:3]], before[lower[:3]]
    )


def test_an_eyeball_turned_by_the_gaze_shows_the_eye_not_its_lid_line_or_the_skin(face: np.ndarray) -> None:
    """The warp shows an eye's opening from the picture shifted with the gaze. Shifted
    far, it drew the picture's own lid line inside the eye, as a dark outline, and the
    skin past it. The eyeball is drawn from the opening carried out past its lids; an
    eye at rest is left as the warp draws it."""
    import cv2

    canvas = _eyes_picture(face)
    warped, out, _ = _turned_eyes(face, canvas, (0.0, 0.0))
    assert np.array_equal(out, warped)  # at rest: the lid line stays where it is
    warped, out, eyes = _turned_eyes(face, canvas, (8.0, 8.0))
    for poly, _ in eyes:
        hole = _filled(poly, (512, 512)).astype(np.uint8)
        inner = cv2.erode(hole, np.ones((5, 5), np.uint8)) > 0

        def stray(pixels: np.ndarray) -> float:  # share of lid line or skin
            px = pixels.astype(int)
            dark = px.max(axis=1) < 80
            skin_like = np.abs(px - EYE_SKIN).max(axis=1) < 25
            return float((dark | skin_like).mean())

        assert stray(warped[inner]) > 0.05  # shifted, the picture's lid line and skin show
        assert stray(out[inner]) < 0.01


def test_a_turned_eyeball_leaves_the_eyes_inner_corner_where_it_is(face: np.ndarray) -> None:
    """Moved whole with the eyeball, the pink caruncle at an eye's inner corner slid
    across the eye, and what it left behind at the corner was its own edge carried out,
    a grey-mauve wedge. It stays at the corner; the white between it and the iris
    stretches, and the iris moves with the gaze."""
    canvas = _eyes_picture(face, caruncle=True)
    away = 7.0  # px, each eyeball away from its inner corner
    sides = [float(np.sign(face[eye.corners[1], 0] - face[eye.corners[0], 0])) for eye in topology.EYES]
    _, out, _ = _turned_eyes(face, canvas, (away * sides[0], away * sides[1]))
    pink = np.all(canvas == CARUNCLE_PINK, axis=-1)
    assert np.abs(out[pink].astype(int) - CARUNCLE_PINK).mean() < 30  # still at the corner
    for eye in topology.EYES:
        inner, outer = face[eye.corners[0], :2].astype(float), face[eye.corners[1], :2].astype(float)
        x, y = np.round(inner + 0.2 * (outer - inner)).astype(int)
        assert out[y, x].min() > 200  # the white, not the caruncle's edge carried out
        along = (outer - inner) / np.linalg.norm(outer - inner)
        x, y = np.round(face[eye.iris[0], :2] + along * away).astype(int)
        assert np.abs(out[y, x].astype(int) - EYE_IRIS).max() < 20  # the iris moved


#: The skin, iris and caruncle colours of ``_eyes_picture`` (BGR).
EYE_SKIN, EYE_IRIS, CARUNCLE_PINK = (150, 170, 220), (60, 110, 160), (150, 140, 225)


def _eyes_picture(face: np.ndarray, caruncle: bool = False) -> np.ndarray:
    """A 512x512 picture of ``face``'s eye openings: white, a brown iris, a dark lid line
    around, skin outside; with ``caruncle``, a pink tenth of each eye at its inner corner."""
    import cv2

    canvas = np.full((512, 512, 3), EYE_SKIN, dtype=np.uint8)
    for eye in topology.EYES:
        ring = np.round(face[eye.ring, :2]).astype(np.int32)
        opening = _filled(ring, (512, 512))
        ball = np.full_like(canvas, 235)
        centre = tuple(int(v) for v in np.round(face[eye.iris[0], :2]))
        cv2.circle(ball, centre, int(0.2 * np.ptp(face[eye.ring, 0])), EYE_IRIS, -1)
        if caruncle:
            inner, outer = face[eye.corners[0], :2], face[eye.corners[1], :2]
            xs = np.arange(512)[None, :] - inner[0]
            ys = np.arange(512)[:, None] - inner[1]
            along = (xs * (outer - inner)[0] + ys * (outer - inner)[1]) / float(np.sum((outer - inner) ** 2))
            ball[along < 0.1] = CARUNCLE_PINK
        canvas[opening] = ball[opening]
        cv2.polylines(canvas, [ring], True, (20, 20, 20), 2)
    return canvas


def _turned_eyes(
    face: np.ndarray, canvas: np.ndarray, gaze: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``canvas``'s eyes with each eyeball's gaze shifted by ``gaze`` px along x: as the
    warp draws them, then with ``Eyeballs`` painted over, and the openings."""
    import cv2

    target = retarget.TargetFace(
        points=face,
        head=warp.IDENTITY,
        gaze_px=np.array([[gaze[0], 0.0], [gaze[1], 0.0]]),
        torso=warp.IDENTITY,
    )
    eyes = rig.Rig(face, 512, 512).eyeballs(target)
    out = canvas.copy()
    for poly, affine in eyes:  # the openings, as the warp draws them
        pixels = cv2.warpAffine(canvas, affine, (512, 512), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        hole = _filled(poly, (512, 512))
        out[hole] = pixels[hole]
    warped = out.copy()
    eyeballs.Eyeballs(canvas, face).paint(out, eyes)
    return warped, out, eyes


def test_an_eyes_picture_is_carried_out_from_its_nearest_pixel_inside_the_opening() -> None:
    """Outside the opening each pixel takes the colour of the nearest one inside it
    (softened), inside it the picture is kept as it is."""
    patch = np.zeros((40, 60, 3), dtype=np.uint8)
    patch[:, :30] = (200, 40, 40)  # the opening's left half blue, its right half green
    patch[:, 30:] = (40, 200, 40)
    patch[:, 28:32] = (255, 255, 255)
    inside = np.zeros((40, 60), dtype=np.uint8)
    inside[15:25, 20:40] = 255
    carried = eyeballs._carry_out(patch, inside, quick=True)
    np.testing.assert_array_equal(carried[inside > 0], patch[inside > 0])
    np.testing.assert_array_equal(carried[:, :15], np.broadcast_to((200, 40, 40), (40, 15, 3)))
    np.testing.assert_array_equal(carried[:, 45:], np.broadcast_to((40, 200, 40), (40, 15, 3)))
    assert (carried[:12, 29:31] > 200).all()  # the white stripe, carried straight up
    assert (carried[28:, 29:31] > 200).all()  # and down


def test_a_character_pictured_smiling_with_its_teeth_shows_them_where_its_lips_part(face: np.ndarray) -> None:
    """The driver's mouth interior fills only what the picture's own opening cannot show.
    A character pictured with its teeth showing (the shared photo) kept them under the
    driver's dark interior, and its mouth read as a black gap whenever the performer's
    lips parted; painted around them, its own teeth show, in its own light."""

    upper, lower = topology.INNER_LIP_PAIRS[:, 0], topology.INNER_LIP_PAIRS[:, 1]
    opening = float((face[lower, 1] - face[upper, 1]).max())
    points, target, own = _opened_wider(face)
    ring = list(topology.INNER_LIPS)
    tops = [ring.index(i) for i in upper]
    bottoms = [ring.index(i) for i in lower]
    np.testing.assert_allclose(own[tops], face[upper, :2], atol=1e-3)  # under the upper lip
    inset = own[bottoms, 1] - face[lower, 1]
    assert (inset < 0).all() and (inset > -0.5 * opening).all()  # less the lower lip's edge

    # The picture's teeth are white; the driver's interior dark.
    canvas, driver_frame = _own_teeth_frames(face, points)
    painter = mouth.MouthPainter(np.array((150.0, 170.0, 220.0)), np.array((150.0, 170.0, 220.0)))
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=own)
    x = int(round(face[13, 0]))
    teeth_y = int(round((face[13, 1] + face[14, 1]) / 2))
    below_y = int(round((face[14, 1] + points[14, 1]) / 2))
    assert out[teeth_y, x].min() > 200  # its own teeth
    assert out[below_y, x].max() < 100  # below them, the performer's open mouth
    # The performer's upper teeth reach lower than the picture's (to 60 % of the opening),
    # and lower teeth show at its bottom: the picture's teeth are drawn down as far, not
    # a second row of upper teeth under them; below them the mouth's dark cavity, then
    # the lower teeth.
    top, bottom = float(points[13, 1]), float(points[14, 1])
    lips = _inside(points, (720, 1280))
    rows = np.arange(720)[:, None]
    teeth = lips & ((rows < top + 0.6 * (bottom - top)) | (rows > bottom - 0.12 * (bottom - top)))
    driver_frame[teeth] = (230, 230, 230)
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=own)
    second_row = int(round(top + 0.55 * (bottom - top)))
    assert face[14, 1] < second_row  # below the picture's own teeth
    assert out[second_row, x].min() > 200  # which reach this far now
    assert out[int(round(top + 0.8 * (bottom - top))), x].max() < 100  # the cavity
    assert out[int(round(bottom - 0.05 * (bottom - top))), x].min() > 180  # the lower teeth
    # A picture with its lips closed or barely parted has no opening of its own: the
    # performer's interior fills all of it, their upper teeth too.
    a, b = topology.MOUTH_CORNERS
    width = float(np.linalg.norm(face[a, :2] - face[b, :2]))
    for gap in (0.0, 0.05):
        picture = retarget.close_mouth(face)
        picture[lower, 1] += gap * width
        assert rig.Rig(picture, 1280, 720).own_mouth(target) is None
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=None)
    assert out[teeth_y, x].min() > 180


def test_a_performers_upper_teeth_never_show_under_a_characters_own(face: np.ndarray) -> None:
    """In a broad smile the performer's upper teeth fill most of their opening. Past the
    dark fade under the character's own teeth their lower edge showed as a second row of
    jagged teeth, dark gaps between; darkened, the character grinned with a dark hole
    under short teeth. The character's own teeth are drawn down to meet them instead, at
    most twice as long; what reaches further is darkened. With the teeth together, the
    grin's lower teeth must still show."""
    points, _, own = _opened_wider(face)
    assert own is not None
    canvas, driver_frame = _own_teeth_frames(face, points)
    painter = mouth.MouthPainter(np.array((150.0, 170.0, 220.0)), np.array((150.0, 170.0, 220.0)))
    top, bottom = float(points[13, 1]), float(points[14, 1])
    own_bottom = float(own[:, 1].max())
    x = int(round(face[13, 0]))

    def at(share: float) -> np.ndarray:
        return out[int(round(top + share * (bottom - top))), x - 12 : x + 13]

    lips = _inside(points, driver_frame.shape[:2])
    rows, cols = np.mgrid[: lips.shape[0], : lips.shape[1]]
    # Upper teeth to 85 % of the opening, a dark gap between each two, then dark.
    teeth = lips & (rows < top + 0.85 * (bottom - top)) & (cols % 9 != 0)
    driver_frame[teeth] = (230, 230, 230)
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=own)
    assert top + 0.6 * (bottom - top) > own_bottom + 3  # well below the picture's teeth,
    assert (at(0.6) == 235).all()  # the picture's teeth, without the performer's gaps
    assert top + 0.88 * (bottom - top) > top + 2 * (own_bottom - top)  # past twice as long
    assert at(0.88).max() < 90

    # Teeth together: upper teeth to 60 %, a grey line, the lower teeth to the lip.
    driver_frame[lips] = (230, 230, 230)
    driver_frame[lips & (np.abs(rows - (top + 0.6 * (bottom - top))) < 1)] = (110, 110, 110)
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=own)
    assert (at(0.5) == 235).all()  # the character's teeth, down to where the teeth meet
    assert at(0.9).min() > 180  # the lower teeth, from where the teeth meet


def test_a_characters_teeth_drawn_longer_are_its_own_stretched_down_from_its_lip(face: np.ndarray) -> None:
    """The character's own teeth are stretched, not repeated or replaced: the gap between
    its front teeth runs on down from its upper lip; near the corners of the mouth, where
    the picture shows little of its teeth, they grow little; and their new lower edge is
    one smooth line, not column by column as the performer's teeth and the gaps between
    them end."""
    points, _, own = _opened_wider(face)
    assert own is not None
    canvas, driver_frame = _own_teeth_frames(face, points)
    inside = _inside(face, canvas.shape[:2])
    rows = np.arange(canvas.shape[0])[:, None]
    x = int(round(face[13, 0]))
    canvas[inside & (np.abs(np.arange(canvas.shape[1]) - x) < 1.0)[None, :]] = (90, 90, 90)  # the gap
    top, bottom = float(points[13, 1]), float(points[14, 1])
    lips = _inside(points, driver_frame.shape[:2])
    cols = np.arange(driver_frame.shape[1])[None, :]
    reach = top + 0.65 * (bottom - top)
    driver_frame[lips & (rows < reach) & (cols % 7 != 0)] = (230, 230, 230)
    painter = mouth.MouthPainter(np.array((150.0, 170.0, 220.0)), np.array((150.0, 170.0, 220.0)))
    out = canvas.copy()
    painter.paint(out, points, driver_frame, points, strength=1.0, own=own)

    column = out[int(round(top)) : int(round(reach)) - 2, x]
    assert (column.max(axis=1) < 130).all()  # the gap, from the lip to the new edge
    left, right = own[:, 0].min(), own[:, 0].max()
    middle = np.arange(int(left + 0.3 * (right - left)), int(left + 0.7 * (right - left)))
    middle = middle[np.abs(middle - x) > 2]
    bright = out[:, middle].min(axis=2) > 200
    lowest = bright.shape[0] - np.argmax(bright[::-1], axis=0)
    assert (lowest > face[14, 1] + 3).all()  # grown past the picture's own teeth
    assert np.abs(np.diff(lowest.astype(int))).max() <= 1  # along one smooth line
    near = int(round(left + 2))  # at the corner the picture's opening is a sliver
    grown_near = out[:, near].min(axis=1) > 200
    assert grown_near.sum() <= 2 * max(1, int(inside[:, near].sum())) + 1


def _opened_wider(face: np.ndarray) -> tuple[np.ndarray, retarget.TargetFace, np.ndarray | None]:
    """The picture's landmarks with the lips parted twice as wide, the target face they
    make, and where it shows the picture's own opening (``Rig.own_mouth``)."""
    upper, lower = topology.INNER_LIP_PAIRS[:, 0], topology.INNER_LIP_PAIRS[:, 1]
    points = face.copy()
    points[lower, 1] += float((face[lower, 1] - face[upper, 1]).max())
    target = retarget.TargetFace(
        points=points, head=warp.IDENTITY, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY
    )
    return points, target, rig.Rig(face, 1280, 720).own_mouth(target)


def _inside(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where ``points``' inner lips enclose (bool, ``shape``)."""
    return _filled(points[topology.INNER_LIPS, :2], shape)


def _filled(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where the polygon ``poly`` (N, 2), rounded to whole pixels, covers (bool, ``shape``)."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (255,))
    return mask > 0


def _own_teeth_frames(face: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 picture whose opening (at ``face``) shows white teeth, and a driver
    frame whose opening (at ``points``) is dark, both on the same skin."""
    canvas = np.full((720, 1280, 3), (150, 170, 220), dtype=np.uint8)
    canvas[_inside(face, canvas.shape[:2])] = (235, 235, 235)
    driver_frame = np.full((720, 1280, 3), (150, 170, 220), dtype=np.uint8)
    driver_frame[_inside(points, driver_frame.shape[:2])] = (20, 20, 60)
    return canvas, driver_frame


def test_the_painted_teeth_lose_the_drivers_light_colour_and_the_tongue_keeps_its_own(
    face: np.ndarray,
) -> None:
    """The mouth interior comes from the driver's frame, lit by the driver's light: warm
    side light showed on a pale character as yellow-orange, stained-looking teeth."""
    driver_frame, (x0, y0, x1, y1) = _driver_mouth(face, (60, 90, 130))  # warm skin (BGR)
    middle_y = int(face[topology.INNER_LIPS, 1].mean())
    driver_frame[y0:middle_y, x0:x1] = (150, 200, 235)  # teeth in warm light
    driver_frame[middle_y:y1, x0:x1] = (40, 40, 110)  # a dark red tongue
    out = _painted(face, (128, 128, 128), driver_frame, (60, 90, 130))

    def spread(pixel: np.ndarray) -> int:  # how far from grey: max - min channel
        return int(pixel.max()) - int(pixel.min())

    cx = int(face[topology.INNER_LIPS, 0].mean())
    teeth, tongue = out[middle_y - 2, cx], out[middle_y + 2, cx]
    assert teeth.mean() > 180  # still bright
    assert spread(teeth) < 0.4 * spread(np.array([150, 200, 235]))  # near white, not orange
    assert tongue[2] > tongue[1] + 40  # still red


def test_the_painted_teeth_take_the_colour_of_a_warm_lit_characters_light(face: np.ndarray) -> None:
    """Teeth left near grey read as blue beside a warm-lit character's skin: a white in
    the character's picture is warm too."""
    driver_frame, (x0, y0, x1, y1) = _driver_mouth(face, (130, 144, 197))  # cool-lit skin (BGR)
    driver_frame[y0:y1, x0:x1] = (190, 190, 200)  # near-white teeth
    out = _painted(face, (56, 89, 150), driver_frame, (130, 144, 197))  # on warm-lit skin
    mouth = face[topology.INNER_LIPS, :2]
    teeth = out[int(mouth[:, 1].mean()), int(mouth[:, 0].mean())].astype(int)
    assert teeth[2] > teeth[0] + 25  # ivory in warm light, not blue-grey
    assert teeth[2] - teeth[0] < 89  # and whiter than the skin (150 - 56 = 94 apart)


@pytest.mark.parametrize(("lips", "red"), [((120, 120, 120), False), ((80, 80, 170), True)])
def test_a_black_and_white_characters_mouth_is_painted_without_colour(
    face: np.ndarray, lips: tuple[int, int, int], red: bool
) -> None:
    """A tongue and throat painted red in a black-and-white picture read as blood: the
    interior takes the character's lack of colour, judged with its lips (a pale face's
    skin alone is nearly grey, and a grey face with red lips keeps a red tongue)."""
    driver_frame, (x0, y0, x1, y1) = _driver_mouth(face, (60, 90, 130))
    driver_frame[y0:y1, x0:x1] = (40, 40, 110)  # a dark red tongue
    out = np.full((720, 1280, 3), 160, dtype=np.uint8)
    char = (np.array((160.0, 160.0, 160.0)), np.array(lips, float))
    painter = mouth.MouthPainter.between(char, (np.array((60.0, 90.0, 130.0)), np.array((40.0, 40.0, 110.0))))
    painter.paint(out, face, driver_frame, face, strength=1.0)
    region = out[y0:y1, x0:x1].astype(int)
    assert (region != 160).any()  # painted
    spread = int((region.max(axis=2) - region.min(axis=2)).max())
    assert (spread > 40) if red else (spread <= 2)


def _driver_mouth(
    face: np.ndarray, skin: tuple[int, int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1280x720 driver frame of plain ``skin`` and the box around ``face``'s inner lips
    (x0, y0, x1, y1) for the test to paint its mouth interior into."""
    lips = face[topology.INNER_LIPS, :2]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + 4
    return np.full((720, 1280, 3), skin, dtype=np.uint8), (int(x0), int(y0), int(x1), int(y1))


def _painted(
    face: np.ndarray,
    char_skin: tuple[int, int, int],
    driver_frame: np.ndarray,
    driver_skin: tuple[int, int, int],
) -> np.ndarray:
    """A character frame of plain ``char_skin`` with the driver's mouth interior painted
    into ``face``'s parted lips at full strength."""
    out = np.full((720, 1280, 3), char_skin, dtype=np.uint8)
    painter = mouth.MouthPainter(np.array(char_skin, float), np.array(driver_skin, float))
    painter.paint(out, face, driver_frame, face, strength=1.0)
    return out


def _mouth_width(points: np.ndarray) -> float:
    """Mouth width (outer corners) as a fraction of the eyes' outer-corner distance."""
    outer_r, outer_l = topology.RIGHT_EYE_CORNERS[1], topology.LEFT_EYE_CORNERS[1]
    a, b = topology.MOUTH_OUTER_CORNERS
    eyes = float(np.linalg.norm(points[outer_r, :2] - points[outer_l, :2])) or 1.0
    return float(np.linalg.norm(points[a, :2] - points[b, :2])) / eyes


def _late_face_video(media: pathlib.Path, dst: pathlib.Path, blank_s: float, face_s: float) -> pathlib.Path:
    """``blank_s`` seconds of an empty grey frame (a title card), then ``face_s`` seconds
    of the character video, 640x360 at 24 fps."""
    import cv2

    from tests.engine import clips

    source = clips.cut(media / "character_video.mp4", dst.with_suffix(".src.mp4"), 0.0, face_s)
    faces = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in clips.frames(source)]
    blank = np.full((360, 640, 3), 90, np.uint8)
    return clips.encode(dst, [blank] * round(blank_s * 24) + faces[: round(face_s * 24)], (640, 360), 24)


def test_a_character_video_whose_face_shows_late_passes_through_until_then(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A title card before the person: the face is looked for past the opening second,
    the frames before it show as they are, and the face is animated from where it shows."""
    clip = _late_face_video(media, tmp_path / "late.mp4", 1.5, 2.0)
    count = 84  # 3.5 s: half of what is shown of the 3.5 s video reaches past 1.5 s
    frames = list(character.VideoCharacter(clip, 640, 360, count, 24).frames())
    assert len(frames) == count
    has_rig = [f.rig is not None for f in frames]
    # The title card passes through up to the last frame analysed before the face shows,
    # and the card's frames between that one and the next do too: given the face's
    # landmarks, a face was warped and a mouth painted onto the card, and the render's
    # mouth took its colours from it (a black opening painted every open mouth black).
    step = character.ANALYSE_EVERY
    assert not any(has_rig[: 36 // step * step - step + 1])
    assert not any(has_rig[:36])
    assert all(has_rig[36:])  # the face, from its first frame
    assert all(float(f.canvas.std()) < 2 for f in frames[:36])  # (grey, as encoded)
    assert all(float(f.canvas.std()) > 20 for f in frames[36:])


def test_a_character_video_whose_face_shows_too_late_fails_naming_how_far_it_looked(
    media: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    clip = _late_face_video(media, tmp_path / "late.mp4", 2.5, 1.0)
    with pytest.raises(engine.EngineError) as err:
        character.VideoCharacter(clip, 640, 360, 84, 24)
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message.startswith(
        "No human-like face was found in the first 1.8 s of the character video"
    )


def test_a_character_video_with_no_face_anywhere_fails_as_having_none(tmp_path: pathlib.Path) -> None:
    from tests.engine import clips

    clip = clips.synthetic(tmp_path / "grey.mp4", 0.8, size=(640, 360))  # shorter than the search
    with pytest.raises(engine.EngineError) as err:
        character.VideoCharacter(clip, 640, 360, 84, 24)
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message == "No human-like face was found in the character video."


def test_the_performers_lip_along_the_opening_takes_the_characters_lip_colour(face: np.ndarray) -> None:
    """The performer's inner-lip landmarks sit a little inside their lips, so the opening
    taken from their frame carries a sliver of their lip along its edge: moved into the
    character's light it read as a grey rim between the character's red lip and the dark
    mouth. It now shows in the character's lip colour; the teeth along the edge and the
    dark cavity stay as they were."""
    import cv2

    shape = (720, 1280)
    # The picture's mouth at twice its size (as a render shows it), opened wide.
    centre = face[topology.INNER_LIPS, :2].mean(axis=0)
    points = face.copy()
    points[:, :2] = centre + 2 * (face[:, :2] - centre)
    lower = np.concatenate(
        [topology.INNER_LIPS[11:], topology.OUTER_LIPS[11:], topology.LIP_RINGS[:, 9:].ravel()]
    )
    points[lower, 1] += 20
    lips = _filled(points[topology.OUTER_LIPS, :2], shape) & ~_inside(points, shape)
    inside = _inside(points, shape)
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    middle_y = points[topology.INNER_LIPS, 1].mean()
    rows = np.arange(shape[0])[:, None]
    sliver = inside & (depth <= 4) & (rows > middle_y)  # the lower lip's inner edge
    teeth = inside & (depth <= 4) & (rows < middle_y)  # upper teeth right under the lip

    driver_frame = np.full((*shape, 3), (130, 144, 197), dtype=np.uint8)  # cool-lit skin
    driver_frame[lips] = (95, 100, 160)  # a pale pink lip
    driver_frame[sliver] = (60, 63, 100)  # in shade at the opening
    driver_frame[inside & (depth > 4)] = (25, 25, 45)  # the dark mouth
    driver_frame[teeth] = (200, 205, 210)
    picture = np.full((*shape, 3), (200, 205, 235), dtype=np.uint8)  # a pale character
    picture[lips] = (70, 70, 210)  # with red lips

    def painted(with_lips: bool, driver_frame: np.ndarray = driver_frame) -> np.ndarray:
        out = picture.copy()
        skin, lip = mouth.MouthPainter.colours(picture, points)
        driver_skin, driver_lip = mouth.MouthPainter.colours(driver_frame, points)
        painter = mouth.MouthPainter(skin, driver_skin, *((lip, driver_lip) if with_lips else ()))
        painter.paint(out, points, driver_frame, points, strength=1.0)
        return out.astype(int)

    def redness(pixels: np.ndarray) -> np.ndarray:  # red's share over a grey's third
        return pixels[:, 2] / np.maximum(pixels.sum(axis=1), 1) - 1 / 3

    ring = sliver & (depth >= 1.5)  # clear of the opening's soft edge
    assert np.allclose(mouth.MouthPainter.lip_colour(picture, points), (70, 70, 210))
    before, after = painted(False), painted(True)
    assert np.median(redness(before[ring])) < 0.1  # the grey rim it was
    assert np.median(redness(after[ring])) > 0.8 * float(redness(np.array([[70, 70, 210]]))[0])
    assert 0.55 * 350 < np.median(after[ring].sum(axis=1)) < 0.7 * 350  # shaded as the performer's
    upper = teeth & (depth >= 1.5)
    assert np.array_equal(after[upper], before[upper])  # the teeth untouched
    deep = inside & (depth > 8)
    assert np.array_equal(after[deep], before[deep])  # and the cavity
    # A black-and-white clip: colour cannot tell its lips from its teeth, so it is left.
    grey = np.repeat(cv2.cvtColor(driver_frame, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
    grey[ring] += np.array([0, 0, 2], np.uint8)  # a grey lip's colour noise
    assert np.array_equal(painted(True, grey), painted(False, grey))


def test_a_video_keeps_the_edges_its_first_face_frame_found_cut(media: pathlib.Path) -> None:
    """Which of the picture's edges hold the person (``rig.EDGE_HOLD``) is decided on the
    first frame with a face and kept, played back too: a person's box grazing an edge
    would otherwise switch the hold on and off from frame to frame, and the hair or
    shoulders by it would jump."""
    video = character.VideoCharacter(media / "character_video.mp4", 1280, 720, 240, 24)
    rigs = [f.rig for f in video.frames() if f.rig is not None]
    assert len(rigs) == 240
    assert rigs[0].edges[1]  # her body is cut by the bottom edge
    assert all(r.edges is rigs[0].edges for r in rigs)
    # Given, the edges are taken as they are, whatever the box says.
    points = rigs[0].source.astype(np.float32)
    free = rig.Rig(points, 1280, 720, rigs[0].person_box, edges=(False, False, False, False))
    assert (free._hold == 1).all()


def test_the_opening_is_filled_down_over_the_characters_own_dark_gap_under_its_lower_lip() -> None:
    """FaceMesh can put a picture's lower inner lip a pixel or two inside its lip; the
    warp then carried the gap's dark line down with the lip, under the painted opening:
    a pale line over a dark one, a double lip. Only the dark run right under the edge
    is taken, never the lip below it, and never more than the reach."""
    mask = np.zeros((20, 10), np.uint8)
    mask[4:8] = 255  # the opening: rows 4-7
    picture = np.full((20, 10, 3), (60, 60, 170), np.uint8)  # lip, grey ~97
    picture[8:11, :5] = 20  # a 3-row dark gap under the left half
    picture[8:, 5:7] = 20  # and a long one, past the reach
    grown = mouth._over_lower_gap(mask, picture, dark=50.0, reach=4)
    rows = [list(np.flatnonzero(grown[:, x])) for x in (0, 5, 8)]
    assert rows[0] == list(range(4, 11))  # over the gap, not into the lip
    assert rows[1] == list(range(4, 12))  # at most the reach
    assert rows[2] == list(range(4, 8))  # no gap: as it was


def test_the_rim_along_the_lower_lip_takes_the_lips_own_colour_there_if_it_is_lip() -> None:
    """In the lips' median colour, the rim along a lower lip lit darker and redder at its
    inner edge showed as a pale pink line; under a thin drawn lip, where the picture
    shows skin, the median stays."""
    inside = np.zeros((20, 10), bool)
    inside[4:10] = True
    median = np.array((88.0, 89.0, 184.0), np.float32)
    picture = np.zeros((20, 10, 3), np.uint8)
    picture[:, :5] = (40, 40, 150)  # a darker, redder lip under the left half
    picture[:, 5:] = (170, 190, 230)  # skin under the right half
    colours = mouth._rim_colours(picture, inside, median)
    assert np.allclose(colours[9, 1], (40, 40, 150))  # lower half, over the lip: its own
    assert np.allclose(colours[9, 8], median)  # over skin: the median
    assert np.allclose(colours[4, 1], median)  # upper half: the median
