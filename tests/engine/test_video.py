"""Streaming decode: sampling every n-th output frame, stopping or holding at the end, and
turning frames stored turned (phones' portrait videos) upright."""

from __future__ import annotations

import pathlib

import av
import numpy as np

from service import engine
from service.engine import driver, video

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
    for frame, end in video._timed_frames(clip):
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
            np.testing.assert_array_equal(video.upright(frame), shown[..., ::-1])


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
