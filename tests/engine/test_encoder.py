"""The encoder: the planes it is given are the picture's at every size; the reference's audio
kept in sync and at a rate AAC takes; a failure reported, not waited on."""

from __future__ import annotations

import fractions
import pathlib
import threading
import time

import av
import cv2
import numpy as np
import pytest

from service.engine import contracts, encoder, video


@pytest.mark.parametrize("ratio", sorted(contracts.RATIOS))
def test_a_frame_reaches_the_encoder_with_the_same_planes_as_pyav_makes(ratio: str) -> None:
    width, height = contracts.RATIOS[ratio]
    rng = np.random.default_rng(7)
    bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

    ours = encoder.yuv420p_frame(yuv)
    pyav = av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    assert (ours.width, ours.height, ours.format.name) == (width, height, "yuv420p")
    assert np.array_equal(ours.to_ndarray(), yuv)
    assert np.array_equal(ours.to_ndarray(), pyav.to_ndarray())


def _synced_clip(path: pathlib.Path, video_from: float, audio_from: float, fmt: str = "mp4") -> pathlib.Path:
    """A 4 s clip whose picture, starting at ``video_from`` s on the container's clock,
    flashes white 1 s in, with a beep at that same moment in audio that begins at
    ``audio_from`` s: in sync, though the streams start apart."""
    rate = 48000
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        v.codec_context.time_base = fractions.Fraction(1, 24)
        a = out.add_stream("aac", rate=rate, layout="mono")
        a.codec_context.time_base = fractions.Fraction(1, rate)
        for i in range(96):
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), 255 if 24 <= i < 27 else 0, np.uint8), format="bgr24"
            )
            frame.pts, frame.time_base = round(video_from * 24) + i, fractions.Fraction(1, 24)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        t = audio_from + np.arange(5 * rate) / rate
        beep = np.where((t >= video_from + 1.0) & (t < video_from + 1.1), 0.8, 0.0).astype(np.float32)
        for k in range(0, len(beep), 1024):
            chunk = av.AudioFrame.from_ndarray(beep[None, k : k + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = rate, round(audio_from * rate) + k
            chunk.time_base = fractions.Fraction(1, rate)
            out.mux(a.encode(chunk))
        out.mux(a.encode(None))
    return path


def _beep_at(path: pathlib.Path) -> float:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        pcm = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    return float(np.flatnonzero(np.abs(pcm) > 0.3)[0] / rate)


@pytest.mark.parametrize(("video_from", "audio_from"), [(1.0, 0.0), (0.0, 0.5), (0.0, 0.0)])
def test_audio_stays_in_sync_where_the_reference_streams_start_apart(
    tmp_path: pathlib.Path, video_from: float, audio_from: float
) -> None:
    """Frames are sampled from the reference's first picture; its audio used to be
    numbered from its own first sample, so a gap between the two came out as a lip-sync
    error that size (audio 1 s late where the picture started 1 s after the sound)."""
    src = _synced_clip(tmp_path / "src.mp4", video_from, audio_from)
    frames = list(video.iter_frames(src, 24, 96))
    assert frames[24].mean() > 200 and frames[23].mean() < 50  # the flash, 1 s in
    out = tmp_path / "out.mp4"
    writer = encoder.Mp4Writer(out, 64, 64, 24, src, 96 / 24)
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.close()
    assert abs(_beep_at(out) - 1.0) < 0.03  # the beep with the flash
    with av.open(str(out)) as c:
        assert abs(float(c.streams.audio[0].duration * c.streams.audio[0].time_base) - 4.0) < 0.05


def test_audio_at_a_rate_aac_does_not_take_is_resampled(tmp_path: pathlib.Path) -> None:
    """192 kHz PCM (a MOV from a field recorder) used to fail the render: FFmpeg's AAC
    encoder refuses the rate."""
    src = tmp_path / "src.mov"
    with av.open(str(src), "w", format="mov") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=192000, layout="stereo")
        for i in range(72):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 24)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        for k in range(0, 3 * 192000, 4096):
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((1, 2 * 4096), np.int16), format="s16", layout="stereo"
            )
            chunk.sample_rate, chunk.pts, chunk.time_base = 192000, k, fractions.Fraction(1, 192000)
            out.mux(a.encode(chunk))
        out.mux(a.encode(None))
    out_path = tmp_path / "out.mp4"
    writer = encoder.Mp4Writer(out_path, 64, 64, 24, src, 3.0)
    for frame in video.iter_frames(src, 24, 72):
        writer.write(np.ascontiguousarray(frame))
    writer.close()
    with av.open(str(out_path)) as c:
        stream = c.streams.audio[0]
        assert (stream.codec_context.name, stream.codec_context.sample_rate) == (
            "aac",
            encoder.AAC_FALLBACK_RATE,
        )
        assert abs(float(stream.duration * stream.time_base) - 3.0) < 0.05


def test_close_reports_an_encoder_failure_instead_of_waiting_for_it(tmp_path: pathlib.Path) -> None:
    """The encoder thread failing with its queue full (a full disk, say) at the end of a
    render: ``close`` used to wait forever for room in the queue."""
    started = threading.Event()

    def finish(frame: np.ndarray, index: int) -> np.ndarray:
        started.set()
        time.sleep(0.3)  # the render writes its last frames meanwhile, filling the queue
        raise OSError(28, "No space left on device")

    writer = encoder.Mp4Writer(tmp_path / "out.mp4", 64, 64, 24, None, 1.0, finish)
    writer.write(np.zeros((64, 64, 3), np.uint8))
    assert started.wait(5)
    for _ in range(video.QUEUE_DEPTH):  # the render's last frames, while the first fails
        writer.write(np.zeros((64, 64, 3), np.uint8))
    outcome: list[BaseException] = []

    def close() -> None:
        try:
            writer.close()
        except BaseException as exc:
            outcome.append(exc)

    closing = threading.Thread(target=close, daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "close() is still waiting"
    assert len(outcome) == 1 and isinstance(outcome[0], OSError) and outcome[0].errno == 28
    writer.abort()
