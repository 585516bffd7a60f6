"""Streaming decode: sampling every n-th output frame, stopping or holding at the end, and
turning frames stored turned (phones' portrait videos) upright."""

from __future__ import annotations

import pathlib

import av
import numpy as np
import pytest

from service import engine
from service.engine import driver, video
from service.web import thumbs

from . import clips


def test_stride_yields_every_nth_frame_of_the_full_stream(reference: pathlib.Path) -> None:
    count = 84  # 3.5 s at 24 fps
    every = list(video.iter_frames(reference, 24, count))
    sampled = list(video.iter_frames(reference, 24, count, stride=11))
    assert len(every) == count and len(sampled) == len(range(0, count, 11))
    for frame, expected in zip(sampled, every[::11], strict=True):
        np.testing.assert_array_equal(frame, expected)


def test_sampling_nearby_yields_frames_on_screen_at_or_shortly_before_each_time(media: pathlib.Path) -> None:
    """The rest scan samples without decoding the frames no other frame is predicted
    from: each sample is a frame of the clip, exactly as decoded in full, the one on
    screen at its time or one shortly before it, and some are earlier ones (the shared
    clip, as phones and x264 write them, has such frames)."""
    clip = media / "driving_expressive.mp4"
    count = 84
    shown = []
    with video._opened(clip) as container:
        for frame, end in video._timed(container, container.streams.video[0]):
            shown.append((frame.to_ndarray(format="bgr24"), end))
            if end > count / 24:
                break
    sampled = list(video.iter_frames(clip, 24, count, stride=11, nearby=True))
    assert len(sampled) == len(range(0, count, 11))
    behind = []
    for i, frame in zip(range(0, count, 11), sampled, strict=True):
        on_screen = next(k for k, (_, end) in enumerate(shown) if i / 24 < end)
        earlier = [
            on_screen - k for k in range(on_screen, on_screen - 4, -1) if np.array_equal(shown[k][0], frame)
        ]
        assert earlier, f"sample {i} is not a frame shown at or shortly before its time"
        behind.append(earlier[0])
    assert max(behind) > 0


def test_stride_holds_the_last_frame_past_a_short_stream(reference: pathlib.Path) -> None:
    # Ask for more frames than the clip has: the tail repeats its last frame.
    sampled = list(video.iter_frames(reference, 24, 120, stride=7))
    assert len(sampled) == len(range(0, 120, 7))
    np.testing.assert_array_equal(sampled[-1], sampled[-2])


def test_without_hold_the_frames_stop_where_the_stream_ends(reference: pathlib.Path) -> None:
    frames = list(video.iter_frames(reference, 24, 120, hold=False))
    assert len(frames) == 84  # 3.5 s at 24 fps
    seconds = video.stream_seconds(reference)  # the picture's own length, by its header
    assert seconds is not None and abs(seconds - 3.5) < 0.05
    np.testing.assert_array_equal(frames[-1], list(video.iter_frames(reference, 24, 84))[-1])


def test_a_portrait_video_stored_turned_is_decoded_and_probed_upright(
    reference: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    wide = np.zeros((256, 320, 3), np.uint8)  # (reference is square: use a wide synthetic)
    source = tmp_path / "wide.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 256, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for i in range(12):
            frame = wide.copy()
            frame[:64] = (0, 0, 255)  # a red band along the top
            frame[:, :16] = (255, 0, 0)  # a blue one down the left
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    for how in (clips.QUARTER, clips.MIRROR, clips.HALF):
        stored = clips.turned(source, tmp_path / "stored.mp4", how=how)
        info = engine.probe(stored)
        assert (info.width, info.height) == (320, 256)  # as shown (a quarter: stored 256x320)
        shown = next(video.iter_frames(stored, 24, 1))
        assert shown.shape == (256, 320, 3)
        assert shown[:48, 32:, 2].mean() > 200 and shown[80:, 32:, 2].mean() < 40  # red on top
        assert shown[80:, :12, 0].mean() > 200 and shown[80:, 24:, 0].mean() < 40  # blue on the left
    # Faces too: the performer in a turned clip is found as in the upright one.
    turned_face = clips.turned(reference, tmp_path / "face.mp4")
    upright = driver.rest_pose(reference, 24, 24)
    found = driver.rest_pose(turned_face, 24, 24)
    assert upright is not None and found is not None
    assert np.abs(found.points[:, :2] - upright.points[:, :2]).mean() < 3.0


@pytest.mark.parametrize(
    "matrix",
    [
        None,
        clips.QUARTER[0],
        clips.MIRROR[0],
        clips.HALF[0],
        (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30),  # a quarter the other way
        (0, 65536, 0, 65536, 0, 0, 0, 0, 1 << 30),  # a quarter and a flip
        (65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),  # flipped top to bottom
    ],
)
def test_a_half_turn_composes_with_every_display_matrix(matrix: tuple[int, ...] | None) -> None:
    """A performer upside down is tracked in frames turned half round, in the same pass
    as the turn the stream's own matrix asks for."""
    picture = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    turned = video.orient(picture, video.half_turned(matrix))
    np.testing.assert_array_equal(turned, video.orient(picture, matrix)[::-1, ::-1])
    assert turned.flags.c_contiguous


def test_decoding_does_not_hold_on_to_frames(reference: pathlib.Path) -> None:
    """Reading a frame's side data ties it into a reference cycle; were that done for
    every frame, decoded frames would pile up until the cyclic collector ran (300 MB
    more while decoding the shared 720p character video)."""
    import gc

    gc.collect()
    gc.disable()
    try:
        alive = 0
        for i, _ in enumerate(video.iter_frames(reference, 24, 40)):
            if i == 39:
                alive = sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive <= 10  # (per frame: all 40)


def test_a_stream_is_converted_by_one_scaler_kept_on_the_decoding_thread(
    reference: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to itself, PyAV sets up a scaler, and a pool of threads to share the frame
    among, for every frame (1.4 ms of wall time and 2.0 ms of CPU a 720x1280 frame); the
    stream's one scaler, on one thread, gives the same pixels, reduced or not."""
    from av.video import reformatter

    made: list[object] = []
    threads: list[object] = []
    real = reformatter.VideoReformatter

    class Counted:
        def __init__(self) -> None:
            self._real = real()
            made.append(self)

        def reformat(self, frame: av.VideoFrame, **options: object) -> av.VideoFrame:
            threads.append(options.get("threads"))
            return self._real.reformat(frame, **options)

    with av.open(str(reference)) as container:
        plain = [
            f.to_ndarray(format="bgr24") for _, f in zip(range(6), container.decode(video=0), strict=False)
        ]
    with av.open(str(reference)) as container:
        small = [
            f.to_ndarray(format="bgr24", width=128, height=128, interpolation="AREA")
            for _, f in zip(range(6), container.decode(video=0), strict=False)
        ]
    monkeypatch.setattr(reformatter, "VideoReformatter", Counted)
    for ours, theirs in (
        (list(video.iter_frames(reference, 30, 6)), plain),
        (list(video.iter_frames(reference, 30, 6, longest=128)), small),
    ):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(made) == 2  # one per stream decoded, not one per frame
    assert threads and set(threads) == {1}


def _patches() -> np.ndarray:
    """Colour patches (RGB): skin tones, saturated primaries, greys from near black to
    near white."""
    colours = [(200, 150, 120), (230, 40, 40), (40, 200, 60), (50, 60, 220)]
    colours += [(128, 128, 128), (30, 30, 30), (240, 240, 240), (250, 220, 190)]
    picture = np.zeros((64, 16 * len(colours), 3), np.uint8)
    for k, colour in enumerate(colours):
        picture[:, 16 * k : 16 * (k + 1)] = colour
    return picture


def test_hdr_video_is_tone_mapped_to_how_it_looks_in_sdr(tmp_path: pathlib.Path) -> None:
    """Phones record HDR (HEVC 10-bit, BT.2020, HLG; some PQ). Converted as it is, its
    signal shows flat and grey; decoded, each colour comes back as the SDR picture it was
    made from (SDR white at HDR reference white), and thumbnails show the same."""
    picture = _patches()
    for transfer in ("hlg", "pq"):
        clip = clips.hdr(iter([picture] * 3), tmp_path / f"{transfer}.mp4", transfer)
        shown = next(video.iter_frames(clip, 24, 1))[..., ::-1]
        centres = shown[32, 8::16].astype(int)
        assert np.abs(centres - picture[32, 8::16]).max() <= 6, transfer
        with av.open(str(clip)) as container:
            frame = next(container.decode(video=0))
            plain = frame.to_ndarray(format="rgb24")[32, 8::16].astype(int)
            assert np.abs(plain - picture[32, 8::16]).max() > 40  # what it looked like untreated
        np.testing.assert_array_equal(thumbs._first_frame(clip), shown[..., ::-1])


def test_an_hdr_video_with_alpha_is_tone_mapped_and_shown_over_mid_grey(tmp_path: pathlib.Path) -> None:
    """A character cut out of its background and exported in HDR (ProRes 4444, HLG):
    its colours are tone-mapped and its transparent pixels show mid-grey. The tone map
    took the alpha away, and what was stored under it showed."""
    picture = _patches()
    alpha = np.zeros(picture.shape[:2], np.uint8)
    alpha[:, 16:] = 255  # the first patch transparent, the rest opaque
    clip = clips.hdr(iter([picture] * 3), tmp_path / "hlg.mov", "hlg", alpha=alpha)
    shown = next(video.iter_frames(clip, 24, 1))[..., ::-1]
    assert np.abs(shown[32, 8].astype(int) - video.MID_GREY).max() <= 3
    centres = shown[32, 24::16].astype(int)
    assert np.abs(centres - picture[32, 24::16]).max() <= 6


def test_the_performer_in_an_hdr_clip_is_tracked_as_in_sdr(
    reference: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    sdr = list(video.iter_frames(reference, 24, 12))
    clip = clips.hdr((frame[..., ::-1] for frame in sdr), tmp_path / "face.mp4", "hlg")
    shown = list(video.iter_frames(clip, 24, 12))
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(shown, sdr, strict=True)]) < 4
    assert driver.rest_pose(clip, 24, 12) is not None
    from service.engine import landmarks

    with landmarks.FaceTracker(video=False) as tracker:
        for frame, original in zip(shown[::4], sdr[::4], strict=True):
            found, plain = tracker.detect(frame), tracker.detect(original)
            assert found is not None and plain is not None
            assert np.abs(found[:, :2] - plain[:, :2]).mean() < 1.0


def _reduced_matches(reduced: np.ndarray, full: np.ndarray, tolerance: float) -> None:
    """``reduced`` is ``full`` brought down to its size by area averaging."""
    import cv2

    expected = cv2.resize(full, (reduced.shape[1], reduced.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - expected).mean() < tolerance


def test_frames_longer_than_asked_come_reduced_as_they_are_decoded(
    reference: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A phone's 4K frames are brought down in the decoder's own conversion: the
    picture as shown (upright, tone-mapped), only smaller; frames no longer than asked
    are untouched."""
    full = list(video.iter_frames(reference, 24, 6))
    small = list(video.iter_frames(reference, 24, 6, longest=128))
    assert all(f.shape == (128, 128, 3) for f in small)
    for a, b in zip(small, full, strict=True):
        _reduced_matches(a, b, 2.0)
    for same, b in zip(video.iter_frames(reference, 24, 6, longest=256), full, strict=True):
        np.testing.assert_array_equal(same, b)
    # Stored turned: reduced, then turned upright (the longer side is the shown height).
    stored = clips.turned(reference, tmp_path / "turned.mp4", how=clips.QUARTER)
    upright = next(video.iter_frames(stored, 24, 1))
    turned_small = next(video.iter_frames(stored, 24, 1, longest=100))
    assert turned_small.shape == (100, 100, 3)
    _reduced_matches(turned_small, upright, 2.5)
    # HDR: the tone map works on the reduced signal.
    hdr = clips.hdr((frame[..., ::-1] for frame in full), tmp_path / "hdr.mp4", "hlg")
    shown = list(video.iter_frames(hdr, 24, 6))
    for a, b in zip(video.iter_frames(hdr, 24, 6, longest=128), shown, strict=True):
        assert a.shape == (128, 128, 3)
        _reduced_matches(a, b, 2.5)


def test_a_reduced_size_keeps_the_shape_in_even_pixels() -> None:
    assert video.reduced_size(3840, 2160, 1920) == (1920, 1080)
    assert video.reduced_size(2160, 3840, 1920) == (1080, 1920)
    assert video.reduced_size(1001, 777, 500) == (500, 388)
    assert video.reduced_size(1920, 1080, 1920) is None and video.reduced_size(640, 480, None) is None


def test_the_performer_is_tracked_on_reduced_frames_in_their_own_pixels(
    reference: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver works on frames at most ``driver.LONGEST`` long: the landmarks, the
    torso, the frame the mouth is taken from and the rest pose all come in the reduced
    frame's pixels, and find the face where the full-size frames do."""
    count = 24
    full = list(driver.stream(reference, 24, count))
    rest_full = driver.rest_pose(reference, 24, count)
    monkeypatch.setattr(driver, "LONGEST", 128)
    small = list(driver.stream(reference, 24, count))
    rest_small = driver.rest_pose(reference, 24, count)
    assert rest_full is not None and rest_small is not None
    assert np.abs(rest_small.points[:, :2] * 2 - rest_full.points[:, :2]).mean() < 1.5
    for a, b in zip(small, full, strict=True):
        assert a.frame is not None and a.frame.shape == (128, 128, 3)
        assert np.abs(a.points[:, :2] * 2 - b.points[:, :2]).mean() < 1.5


def test_frames_bigger_than_their_canvas_needs_come_reduced_to_just_cover_it(
    short_character_video: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A character video (a 4K clip for a 720p render) is decoded no larger than the
    canvas needs: the smallest size that, scaled uniformly, covers it; one that only
    just covers it, or is smaller, is untouched."""
    full = next(video.iter_frames(short_character_video, 24, 1))  # 640x360
    wide = next(video.iter_frames(short_character_video, 24, 1, cover=(320, 180)))
    assert wide.shape == (180, 320, 3)
    _reduced_matches(wide, full, 2.0)
    tall = next(video.iter_frames(short_character_video, 24, 1, cover=(100, 300)))
    assert tall.shape == (300, 534, 3)  # the height covers; the width follows the shape
    for enough in ((640, 360), (1280, 720), (720, 1280)):
        same = next(video.iter_frames(short_character_video, 24, 1, cover=enough))
        np.testing.assert_array_equal(same, full)
    # Stored turned (360 wide, 640 high): measured as shown (640 wide, 360 high).
    stored = clips.turned(short_character_video, tmp_path / "turned.mp4", how=clips.QUARTER)
    upright = next(video.iter_frames(stored, 24, 1))
    reduced = next(video.iter_frames(stored, 24, 1, cover=(320, 180)))
    assert upright.shape == (360, 640, 3) and reduced.shape == (180, 320, 3)
    _reduced_matches(reduced, upright, 2.5)


def test_a_character_video_larger_than_its_canvas_looks_the_same_reduced_as_decoded(
    media: pathlib.Path, clip_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A character video twice the canvas's size, reduced as it is decoded, gives the
    canvases and the face it gave decoded at full size and scaled by the framing."""
    from service.engine import character

    large = clips.cut(
        media / "character_video.mp4", clip_dir / "character_large.mp4", 0.0, 0.5, size=(1280, 720)
    )
    count = 10
    reduced = list(character.VideoCharacter(large, 640, 360, count, 24).frames())
    full_size = video.shown
    monkeypatch.setattr(
        video, "shown", lambda first, longest=None, cover=None, **aspect: full_size(first, longest, **aspect)
    )
    decoded_whole = list(character.VideoCharacter(large, 640, 360, count, 24).frames())
    for a, b in zip(reduced, decoded_whole, strict=True):
        assert np.abs(a.canvas.astype(int) - b.canvas).mean() < 1.5
        assert np.abs(a.points[:, :2] - b.points[:, :2]).mean() < 0.3


def test_the_driver_says_what_size_it_works_on() -> None:
    """What the render sizes the rest scan's read-ahead by: a 4K reference's frames are
    worked on at 1920 px, smaller ones as they are."""
    assert driver.frame_size(3840, 2160) == (1920, 1080) and driver.frame_size(2160, 3840) == (1080, 1920)
    assert driver.frame_size(1280, 720) == (1280, 720) and driver.frame_size(1920, 1080) == (1920, 1080)
