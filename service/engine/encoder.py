"""Streaming video output: H.264 + AAC into an MP4 (``Mp4Writer``).

Frames are encoded one at a time, on a thread of their own, as they come. The video is
H.264 yuv420p (BT.601 limited range, tagged as such) with the moov atom first, and the
reference's audio is interleaved as the video advances, trimmed to the video's length.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fractions
import functools
import pathlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from service.engine import video

#: x264 speed/quality trade-off; 'veryfast' is ~15 ms per 720p frame on this hardware.
#: 'superfast' saves ~6 CPU-ms a frame at the same PSNR but measurably lowered the
#: independent detector's eye/mouth correlations on held-out pairs (bench/fidelity.py).
X264_PRESET = "veryfast"
X264_CRF = "20"
#: Sample rates FFmpeg's AAC encoder takes; audio at any other rate (a 192 kHz or an
#: odd-rate recording) is resampled to ``AAC_FALLBACK_RATE``.
AAC_RATES = frozenset(
    {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}
)
AAC_FALLBACK_RATE = 48000
#: Frames encoded while glibc fills every new allocation with ``FILL_BYTE`` (see
#: ``_FilledAllocations``): enough for x264 to have allocated its whole pipeline
#: (lookahead, B-frames, frame threads; the last allocation was seen on the 2nd frame).
FILL_FRAMES = 48
FILL_BYTE = 0x5A
_M_PERTURB = -6  # mallopt parameter numbers, from glibc's malloc.h
M_ARENA_MAX = -8


def mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``; False where the C library is not glibc (musl,
    macOS: nothing to tune) or refuses it."""
    libc = _libc()
    try:
        return libc is not None and bool(libc.mallopt(param, value))
    except AttributeError:
        return False


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` runs ``ldconfig`` in a child
    process, which every encoder's start and stop would otherwise pay)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


class _FilledAllocations:
    """While any encoder is filling its pipeline, new allocations come filled with a
    fixed byte (glibc's ``M_PERTURB``), not with whatever the heap last held.

    x264, as PyAV's FFmpeg runs it (B-frames with mb-tree), reads memory it allocated
    while its lookahead filled before writing all of it: the same frames then came out
    with different bits, from one render to the next, wherever the heap's leftovers
    differed (a character video at 960:960 or 720:1280: every frame up to 31 grey levels
    apart, decoded). Filled, the output depends on the frames alone. Filling is
    process-wide and costs about a sixth of the CPU of everything allocating meanwhile,
    so it lasts only the first ``FILL_FRAMES`` frames (no B-frames or no mb-tree would
    also do, at 30-55 % or twice the bytes for the same picture).
    """

    _lock = threading.Lock()
    _filling = 0

    @classmethod
    def start(cls) -> None:
        with cls._lock:
            cls._filling += 1
            if cls._filling == 1:
                mallopt(_M_PERTURB, FILL_BYTE)

    @classmethod
    def stop(cls) -> None:
        with cls._lock:
            cls._filling -= 1
            if cls._filling == 0:
                mallopt(_M_PERTURB, 0)


def yuv420p_frame(yuv: np.ndarray) -> Any:
    """A yuv420p ``av.VideoFrame`` holding ``yuv``: an I420 picture as OpenCV makes it,
    (height * 3 / 2, width) uint8, the Y rows, then U's, then V's.

    Each plane is copied in by numpy, which leaves the GIL free while it copies. PyAV's
    ``VideoFrame.from_ndarray`` holds it for its copy: over a cartoon x talking portrait
    render that copy was most of the time the encoder thread held the GIL (sampled with
    py-spy), time in which the render thread could not run. The pixels are the same.
    """
    import av

    h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
    frame = av.VideoFrame(w, h, "yuv420p")
    chroma = yuv[h:].reshape(2, h // 2, w // 2)
    for plane, pixels in zip(frame.planes, (yuv[:h], chroma[0], chroma[1]), strict=True):
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        rows[: pixels.shape[0], : pixels.shape[1]] = pixels
    return frame


class Mp4Writer:
    """Encode BGR frames to an H.264 MP4 (faststart), muxing in trimmed source audio.

    Call ``write`` per frame, then ``close``; ``abort`` discards the container. The audio
    of ``audio_source`` (if it has any) is re-encoded to AAC and interleaved as the video
    advances, cut at ``duration_s``. Encoding runs on a background thread (x264 releases
    the GIL) fed through a short queue, so it overlaps the next frame's rendering;
    ``finish(frame, index)``, if given, runs on that thread too, just before encoding
    (a last whole-frame step such as the camera drift, moved off the render thread).
    """

    def __init__(
        self,
        path: pathlib.Path,
        width: int,
        height: int,
        fps: int,
        audio_source: pathlib.Path | None,
        duration_s: float,
        finish: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> None:
        import av

        self._container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, fps)
        stream.options = {
            "preset": X264_PRESET,
            "crf": X264_CRF,
            "x264-params": "colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m:range=tv",
        }
        self._video = stream
        self._finish = finish
        self._fps = fps
        self._width, self._height = width, height
        self._frames = 0
        self._audio = _AudioPump(self._container, audio_source, duration_s) if audio_source else None
        if self._audio is not None and not self._audio.active:
            self._audio = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=video.QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="engine-encoder", daemon=True)
        self._thread.start()

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def write(self, bgr: np.ndarray) -> None:
        """Queue one frame (blocks while the encoder is ``video.QUEUE_DEPTH`` frames behind)."""
        self._put(bgr)

    def _put(self, item: np.ndarray | None) -> None:
        """Queue ``item`` for the encoder thread, raising its error if it has failed (with
        the queue full, nothing would ever take it)."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._thread.is_alive():
            raise RuntimeError("encoder thread stopped")

    def _run(self) -> None:
        filling = True
        _FilledAllocations.start()
        try:
            while True:
                bgr = self._queue.get()
                if bgr is None:
                    return
                self._encode(bgr)
                if filling and self._frames >= FILL_FRAMES:
                    filling = False
                    _FilledAllocations.stop()
        except BaseException as exc:
            self._error = exc
        finally:
            if filling:
                _FilledAllocations.stop()

    def _encode(self, bgr: np.ndarray) -> None:
        import cv2

        if self._finish is not None:
            bgr = self._finish(bgr, self._frames)
        yuv = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = yuv420p_frame(yuv)
        frame.pts = self._frames
        frame.time_base = fractions.Fraction(1, self._fps)
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self._frames += 1
        if self._audio is not None:
            self._audio.pump_until(self._frames / self._fps)

    def close(self) -> None:
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        for packet in self._video.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.finish()
        self._container.close()

    def abort(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join()
        with contextlib.suppress(Exception):  # already broken; the caller deletes the file
            self._container.close()
        if self._audio is not None:
            self._audio.abort()


class _AudioPump:
    """Decode the reference's first audio track and re-encode it to AAC, up to a limit.

    The output's time 0 is the reference's first video frame (``video.start_time``), as
    the frames are sampled: audio that starts later is preceded by silence, audio that
    starts earlier loses its head, so speech stays on the lips even where the streams
    were not cut together (a recorder's WebM whose camera started late, a clip cut
    without re-encoding).
    """

    def __init__(self, out_container: Any, source: pathlib.Path, duration_s: float) -> None:
        import av

        self._av = av
        self._limit = duration_s
        self._src = av.open(str(source), mode="r")
        self.active = bool(self._src.streams.audio)
        if not self.active:
            self._src.close()
            return
        with av.open(str(source), mode="r") as probe:
            self._video_start = video.start_time(probe) if probe.streams.video else None
        in_stream = self._src.streams.audio[0]
        rate = in_stream.codec_context.sample_rate or AAC_FALLBACK_RATE
        if rate not in AAC_RATES:
            rate = AAC_FALLBACK_RATE
        layout = "mono" if (in_stream.codec_context.channels or 2) == 1 else "stereo"
        self._rate = rate
        self._layout = layout
        self._out = out_container.add_stream("aac", rate=rate, layout=layout)
        self._out.codec_context.time_base = fractions.Fraction(1, rate)
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self._frames = self._src.decode(in_stream)
        self._samples = 0  # samples sent to the encoder
        self._skip: int | None = None  # samples of the source's head still to drop (None: not yet known)
        self._container = out_container
        self._done = False

    def pump_until(self, t: float) -> None:
        """Encode audio until it covers time ``t`` (or the limit, or the source ends)."""
        target = min(t, self._limit)
        while not self._done and self._samples < target * self._rate:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._done = True
                break
            except self._av.error.FFmpegError:  # damaged audio: keep what we have
                self._done = True
                break
            if self._skip is None:
                self._align(frame)
            for out in self._resampler.resample(frame):
                if self._skip:
                    dropped = min(self._skip, out.samples)
                    self._skip -= dropped
                    if dropped == out.samples:
                        continue
                    out = self._frame(out.to_ndarray()[:, dropped:])
                self._encode(out)

    def _align(self, first: Any) -> None:
        """Put the first audio frame where it plays against the video's first frame."""
        lead = 0.0
        if first.time is not None and self._video_start is not None:
            lead = float(first.time) - self._video_start
        offset = int(round(lead * self._rate))
        self._skip = max(0, -offset)
        if offset > 0:
            channels = 1 if self._layout == "mono" else 2
            self._encode(self._frame(np.zeros((channels, offset), dtype=np.float32)))

    def _frame(self, data: np.ndarray) -> Any:
        """An AAC-ready frame of planar float samples (channels, n)."""
        frame = self._av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data), format="fltp", layout=self._layout
        )
        frame.sample_rate = self._rate
        return frame

    def _encode(self, frame: Any) -> None:
        remaining = int(round(self._limit * self._rate)) - self._samples
        if remaining <= 0:
            self._done = True
            return
        if frame.samples > remaining:
            frame = self._frame(frame.to_ndarray()[:, :remaining])
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, self._rate)
        self._samples += frame.samples
        for packet in self._out.encode(frame):
            self._container.mux(packet)

    def finish(self) -> None:
        self.pump_until(self._limit)
        for packet in self._out.encode(None):
            self._container.mux(packet)
        self._src.close()

    def abort(self) -> None:
        self._src.close()
