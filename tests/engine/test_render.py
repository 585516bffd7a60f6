"""render(): output format, determinism, controls, playing past the end, failures, cancellation."""

from __future__ import annotations

import pathlib

import av
import numpy as np
import pytest

from service import engine
from service.engine import character, landmarks, mouth, video
from tests.engine import clips
from tests.engine.conftest import DEFAULTS, Render, photo_request, video_request

REFERENCE_S = 3.5
FRAMES = round(REFERENCE_S * 24)


def _face_points(path: pathlib.Path, indices: list[int]) -> dict[int, np.ndarray | None]:
    wanted = set(indices)
    out: dict[int, np.ndarray | None] = {}
    with landmarks.FaceTracker(video=False) as tracker:
        for i, frame in enumerate(clips.frames(path)):
            if i in wanted:
                out[i] = tracker.detect(frame)
            if i >= max(indices):
                break
    return out


@pytest.mark.parametrize("ratio", list(engine.RATIOS))
def test_output_has_exact_size_rate_length_and_audio_per_ratio(render_once: Render, ratio: str) -> None:
    rendered = render_once(ratio=ratio)
    result, path = rendered.result, rendered.path
    width, height = engine.RATIOS[ratio]
    assert (result.width, result.height, result.fps) == (width, height, 24)
    assert result.frames == FRAMES and result.has_audio
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.format.name) == ("h264", "yuv420p")
        assert (video.width, video.height) == (width, height)
        assert video.average_rate == 24
        assert container.duration / 1e6 == pytest.approx(REFERENCE_S, abs=0.1)
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
    with path.open("rb") as fh:
        head = fh.read(64)
    assert b"moov" in head  # faststart: the index precedes the media data
    assert sum(1 for _ in clips.frames(path, scale=0.25)) == FRAMES
    # Framing keeps the face in view whatever the shape of the canvas.
    assert _face_points(path, [0])[0] is not None


def test_same_seed_gives_identical_frames(
    render_once: Render, tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    first = render_once().path
    again = tmp_path / "again.mp4"
    engine.render(photo_request(media, reference, again))
    assert clips.frame_hashes(first) == clips.frame_hashes(again)


def test_a_video_character_renders_identically_twice_on_a_square_canvas(
    tmp_path: pathlib.Path, reference: pathlib.Path, short_character_video: pathlib.Path
) -> None:
    """x264 (B-frames with mb-tree) read memory it had allocated but not yet written while
    its pipeline filled: the same frames came out with different bits from one render to
    the next wherever the heap's leftovers differed (here at 960:960 and 720:1280; every
    decoded frame up to ~30 grey levels apart). New allocations are filled meanwhile."""
    hashes = []
    for k in range(2):
        out = tmp_path / f"v{k}.mp4"
        engine.render(video_request(short_character_video, reference, out, "960:960"))
        hashes.append(clips.frame_hashes(out))
    assert hashes[0] == hashes[1]


def test_a_performer_upside_down_drives_the_character_as_the_upright_one_does(
    render_once: Render, tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    """A clip stored upside down (no display matrix to say so) is tracked turned upright:
    read as it is shown, the character's face was wrecked in every frame."""
    upside_down = clips.cut(
        reference, tmp_path / "upside_down.mp4", 0.0, REFERENCE_S, store=lambda img: img[::-1, ::-1]
    )
    out = tmp_path / "out.mp4"
    engine.render(photo_request(media, upside_down, out, **DEFAULTS))
    pairs = zip(clips.frames(render_once().path, 0.5), clips.frames(out, 0.5), strict=True)
    apart = [float(np.abs(a.astype(np.int16) - b)[100:300, 220:420].mean()) for a, b in pairs]
    assert max(apart) < 8.0  # the face region: as good as the same (re-encoded reference)


def test_different_seed_moves_the_camera_differently(render_once: Render) -> None:
    seed0 = render_once().path
    seed8 = render_once(seed=8).path
    a = next(clips.frames(seed0)).astype(int)
    b = next(clips.frames(seed8)).astype(int)
    # Same performance, same character: only the seeded camera drift differs.
    assert np.abs(a - b).mean() > 2.0


def test_expression_intensity_scales_mouth_opening(render_once: Render) -> None:
    weak = render_once(expression_intensity=1).path
    strong = render_once(expression_intensity=3).path
    frames = list(range(0, FRAMES, 6))
    weak_pts, strong_pts = _face_points(weak, frames), _face_points(strong, frames)
    weak_gap = [mouth.gap(p) for p in weak_pts.values() if p is not None]
    strong_gap = [mouth.gap(p) for p in strong_pts.values() if p is not None]
    assert len(weak_gap) >= len(frames) - 2 and len(strong_gap) >= len(frames) - 2
    assert max(strong_gap) > max(weak_gap) * 1.3


def test_a_character_pictured_with_its_teeth_shows_them_as_the_performer_talks(render_once: Render) -> None:
    """The shared photo smiles with its upper teeth showing. Where the performer's lips
    part, the output shows those teeth under its upper lip, not the performer's shaded
    mouth interior laid over them (which read as a dark gap)."""
    path = render_once().path
    pts = _face_points(path, list(range(0, FRAMES, 3)))
    frames = {i: frame for i, frame in enumerate(clips.frames(path)) if i in pts}
    teeth = []
    for i, points in pts.items():
        if points is None or mouth.gap(points) < 0.15:
            continue
        upper, lower = points[13, :2], points[14, :2]  # the inner lips' middles
        x, y = np.round(upper + 0.25 * (lower - upper)).astype(int)
        teeth.append(float(frames[i][y - 1 : y + 2, x - 3 : x + 4].mean()))
    assert len(teeth) >= 3
    assert np.median(teeth) > 100  # ~130 her teeth (in shade); ~57 the painted interior


def test_body_control_moves_the_shoulders(render_once: Render) -> None:
    with_body = render_once(body_control=True).path
    head_only = render_once(body_control=False).path
    diffs = []
    for a, b in zip(clips.frames(with_body, 0.25), clips.frames(head_only, 0.25), strict=True):
        bottom = slice(int(a.shape[0] * 0.85), None)
        diffs.append(np.abs(a[bottom].astype(int) - b[bottom].astype(int)).mean())
    assert max(diffs) > 2.0  # the torso followed the performer only with body control


def test_a_person_moved_past_the_pictures_edge_is_cut_off_there_not_drawn_over_the_bands(
    media: pathlib.Path,
) -> None:
    """A square picture on a wide canvas leaves bands beside it; a performer who travels
    far carries the character's shoulders past the picture's edge, where they had been
    drawn over the band like a cut-out stuck on the frame."""
    from service.engine import character, pipeline, retarget, warp

    still = character.StillCharacter(media / "character_photo.jpg", 1280, 720)
    window = still.window
    assert window is not None  # 512x512 on 1280x720: bands left and right
    cf = still.frame
    right = int(np.flatnonzero(window.alpha[360] > 0)[-1]) + 1  # the band starts here
    dx = 0.15 * 1280  # the head and shoulders travel right, past the picture's edge
    target = retarget.TargetFace(
        points=(cf.points + np.array([dx, 0.0, 0.0], dtype=np.float32)).astype(np.float32),
        head=np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]]),
        gaze_px=np.zeros((2, 2)),
        torso=np.array([[1.0, 0.0, 0.75 * dx], [0.0, 1.0, 0.0]]),
    )
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)
    unclipped = pipeline._animate(cf, target, warper)

    def changed(a: np.ndarray, columns: slice) -> float:  # share of pixels changed visibly
        return float((np.abs(a[:, columns].astype(int) - cf.base[:, columns]).max(axis=2) > 20).mean())

    band = slice(right, None)
    assert changed(unclipped, slice(right, right + 100)) > 0.1  # the shoulders spilled over
    out = pipeline._animate(cf, target, warper, window)
    assert np.array_equal(out[:, band], cf.base[:, band])  # the band as it was
    assert changed(out, slice(right - 100, right)) > 0.1  # they moved, inside the picture


def test_a_stills_eyeballs_turned_by_the_gaze_are_drawn_from_their_carried_out_picture(
    media: pathlib.Path,
) -> None:
    """The render draws a still's turned eyeballs from ``eyeballs.Eyeballs`` (its own
    test shows what that mends); with the eyes at rest it changes nothing."""
    import dataclasses

    from service.engine import character, pipeline, retarget, warp

    cf = character.StillCharacter(media / "character_photo.jpg", 1280, 720).frame
    assert cf.eyeballs is not None
    plain = dataclasses.replace(cf, eyeballs=None)
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)
    for gaze, differs in ((0.0, False), (8.0, True)):
        target = retarget.TargetFace(
            points=cf.points, head=warp.IDENTITY, gaze_px=np.full((2, 2), (gaze, 0.0)), torso=warp.IDENTITY
        )
        changed = pipeline._animate(cf, target, warper) != pipeline._animate(plain, target, warper)
        assert changed.any() == differs


def test_a_stills_real_eyes_get_their_lids_made_as_they_shut(media: pathlib.Path) -> None:
    """The render passes a real-eyed still's shut eyes to ``lids.ShutEyes`` (its own
    test shows what it does to them); with the eyes open it changes nothing."""
    import dataclasses

    from service.engine import character, pipeline, retarget, topology, warp

    cf = character.StillCharacter(media / "character_photo.jpg", 1280, 720).frame
    assert cf.shut_eyes is not None
    plain = dataclasses.replace(cf, shut_eyes=None)
    warper = warp.Warper(pipeline.MAP_DOWNSAMPLE)
    shut = cf.points.copy()
    for eye in topology.EYES:
        mid = cf.points[eye.lower] + retarget.EYE_CLOSE_POINT * (cf.points[eye.upper] - cf.points[eye.lower])
        shut[eye.upper], shut[eye.lower] = mid, mid
    for points, differs in ((cf.points, False), (shut, True)):
        target = retarget.TargetFace(
            points=points, head=warp.IDENTITY, gaze_px=np.zeros((2, 2)), torso=warp.IDENTITY
        )
        changed = pipeline._animate(cf, target, warper) != pipeline._animate(plain, target, warper)
        assert changed.any() == differs


def test_a_banded_pictures_plate_stops_short_of_its_feathered_edge(media: pathlib.Path) -> None:
    """The cartoon framed 720x1280 has bands above and below; the band's colour, mixed
    into the picture's feathered edge, streaked the fill above its hair."""
    from service.engine import character

    still = character.StillCharacter(media / "character_cartoon.jpg", 720, 1280)
    assert still.window is not None
    x0, y0, x1, y1 = still.window.inner
    area, plate, canvas = still.frame.plate_area, still.frame.background, still.frame.canvas
    assert area is not None and area[y0:y1, x0:x1].any()  # the person is filled in the picture
    outside = np.ones(area.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not area[outside].any()
    assert np.array_equal(plate[outside], canvas[outside])


def test_video_character_plays_on_past_its_end(
    tmp_path: pathlib.Path,
    reference: pathlib.Path,
    short_character_video: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The character's length is the probe's, not read from the file a second time.
    monkeypatch.setattr(video, "stream_seconds", lambda path: pytest.fail("the video's length read again"))
    out = tmp_path / "video_char.mp4"
    result = engine.render(video_request(short_character_video, reference, out, "960:960"))
    assert (result.width, result.height, result.frames) == (960, 960, FRAMES)
    frames = list(clips.frames(out, scale=0.25))
    assert len(frames) == FRAMES
    tail = frames[-24:]  # 2.5-3.5 s: past the character clip's 1.5 s
    motion = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(tail, tail[1:], strict=False)]
    assert max(motion) > 0.5  # still moving, not frozen on the last frame
    assert _face_points(out, [FRAMES - 1])[FRAMES - 1] is not None


def test_a_browser_recording_with_audio_past_its_picture_renders_the_pictures_length(
    tmp_path: pathlib.Path, media: pathlib.Path
) -> None:
    # A WebM as MediaRecorder writes it (no length in its header), its sound running on.
    reference = clips.recorded(
        media / "driving_expressive.mp4", tmp_path / "rec.webm", 3.2, audio_seconds=6.0
    )
    out = tmp_path / "out.mp4"
    result = engine.render(photo_request(media, reference, out, ratio="960:960"))
    assert result.frames == 77 and result.has_audio
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(77 / 24, abs=0.05)
    assert sum(1 for _ in clips.frames(out, scale=0.25)) == 77


def test_dog_character_fails_cleanly(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    out = tmp_path / "dog.mp4"
    with pytest.raises(engine.EngineError) as err:
        engine.render(
            engine.RenderRequest(
                character_path=media / "character_dog.jpg",
                character_type="image",
                reference_path=reference,
                output_path=out,
            )
        )
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message == "No human-like face was found in the character image."
    assert list(tmp_path.iterdir()) == []


def test_an_upside_down_character_is_told_to_be_turned_upright(
    tmp_path: pathlib.Path, media: pathlib.Path
) -> None:
    """FaceMesh finds faces turned up to about 90 degrees; a picture turned half round
    was refused as having no face at all."""
    import cv2

    turned = tmp_path / "turned.jpg"
    cv2.imwrite(str(turned), cv2.imread(str(media / "character_photo.jpg"))[::-1, ::-1])
    with pytest.raises(engine.EngineError) as err:
        character.StillCharacter(turned, 640, 360)
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message.startswith(
        "The face in the character image is upside down; turn the picture upright"
    )


@pytest.mark.parametrize("make", ["corrupt", "too_short", "too_long", "no_face"])
def test_bad_reference_fails_with_asset_invalid(
    tmp_path: pathlib.Path, media: pathlib.Path, reference: pathlib.Path, make: str
) -> None:
    ref = tmp_path / "ref.mp4"
    if make == "corrupt":
        ref.write_bytes(reference.read_bytes()[:200] + bytes(5000))
    elif make == "too_short":
        clips.cut(reference, ref, 0.0, 2.0)
    elif make == "too_long":
        clips.synthetic(ref, 31.0)
    else:
        clips.synthetic(ref, 3.5)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(engine.EngineError) as err:
        engine.render(photo_request(media, ref, out_dir / "o.mp4"))
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message.endswith(".")
    assert list(out_dir.iterdir()) == []  # no partial output left behind


def test_cancellation_stops_at_the_first_check_and_leaves_nothing(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    seen: list[float] = []
    answers: list[bool] = []

    def should_cancel() -> bool:
        answers.append(bool(seen) and seen[-1] >= 0.3)
        return answers[-1]

    with pytest.raises(engine.RenderCancelled):
        engine.render(
            photo_request(media, reference, tmp_path / "o.mp4"),
            progress=seen.append,
            should_cancel=should_cancel,
        )
    assert answers.count(True) == 1 and answers[-1]  # no work after the first "yes"
    assert seen[-1] < 0.5
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_mid_render_leaves_nothing_behind(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    """Ctrl-C (or SystemExit) is not an Exception: it used to skip the clean-up and leave
    the half-written ``.partial`` file beside the destination."""

    def interrupt(fraction: float) -> None:
        if fraction >= 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.render(photo_request(media, reference, tmp_path / "o.mp4"), progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_progress_is_monotonic_frequent_and_reaches_one(render_once: Render) -> None:
    seen = render_once().progress
    values = [p for _, p in seen]
    assert values == sorted(values)
    assert values[0] == 0.0 and values[-1] == 1.0
    # Reported during preparation too, and about every frame while rendering.
    assert any(0.0 < p < 0.03 for p in values)
    assert len(values) > 20


def test_character_type_must_match_the_file(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path
) -> None:
    with pytest.raises(engine.EngineError) as err:
        engine.render(photo_request(media, reference, tmp_path / "o.mp4", character_type="video"))
    assert err.value.failure_code == "ASSET.INVALID"
