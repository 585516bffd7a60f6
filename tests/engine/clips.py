"""Make small test clips from the shared media by re-encoding with PyAV.

Tests never ship media: they cut what they need (short, small, odd codecs) from the
shared fixtures at run time, into a temporary directory.
"""

from __future__ import annotations

import fractions
import hashlib
import itertools
import os
import pathlib
import struct
from collections.abc import Callable, Iterable, Iterator

import av
import cv2
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
MEDIA = pathlib.Path(os.environ.get("CALLBOARD_TEST_MEDIA", REPO.parent / "shared" / "media"))


def cut(
    src: pathlib.Path,
    dst: pathlib.Path,
    start: float,
    duration: float,
    *,
    size: tuple[int, int] | None = None,
    codec: str = "libx264",
    fmt: str = "mp4",
    audio: bool = True,
    pix_fmt: str = "yuv420p",
    store: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pathlib.Path:
    """Re-encode ``duration`` seconds of ``src`` from ``start`` (optionally resized, and
    each picture stored as ``store`` makes it: turned, flipped)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or fractions.Fraction(30)
        vout = out.add_stream(codec, rate=rate)
        width, height = size or (vin.codec_context.width, vin.codec_context.height)
        if store is not None:
            height, width = store(np.zeros((height, width))).shape
        vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            vout.options = {"preset": "ultrafast"}
        ain = inp.streams.audio[0] if (audio and inp.streams.audio) else None
        aout = out.add_stream("aac" if fmt != "webm" else "libopus", rate=48000) if ain else None
        resampler = (
            av.AudioResampler(format="fltp" if fmt != "webm" else "s16", layout="stereo", rate=48000)
            if ain
            else None
        )
        streams = [vin] + ([ain] if ain else [])
        n_video = 0
        n_samples = 0
        for packet in inp.demux(*streams):
            for frame in packet.decode():
                t = frame.time
                if t is None or t < start or t >= start + duration:
                    continue
                if isinstance(frame, av.VideoFrame):
                    img = frame.to_ndarray(format="rgb24")
                    if size:
                        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                    if store is not None:
                        img = np.ascontiguousarray(store(img))
                    vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                    vf.pts = n_video
                    vf.time_base = 1 / rate
                    n_video += 1
                    out.mux(vout.encode(vf))
                elif aout is not None and resampler is not None:
                    for af in resampler.resample(frame):
                        af.pts = n_samples
                        af.time_base = fractions.Fraction(1, 48000)
                        n_samples += af.samples
                        out.mux(aout.encode(af))
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
    return dst


def synthetic(
    dst: pathlib.Path, duration: float, *, size: tuple[int, int] = (64, 64), fps: int = 24
) -> pathlib.Path:
    """A small grey clip of ``duration`` seconds (for length checks; no face)."""
    grey = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    return encode(dst, itertools.repeat(grey, int(round(duration * fps))), size, fps)


def encode(
    dst: pathlib.Path,
    pictures: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: int,
    options: dict[str, str] | None = None,
    *,
    codec: str = "libx264",
    fmt: str = "mp4",
    pix_fmt: str = "yuv420p",
) -> pathlib.Path:
    """A video of BGR (or BGRA) ``pictures`` (``size`` = width, height), one per frame:
    H.264 in MP4 (``ultrafast`` unless ``options`` say) unless ``codec``, ``fmt`` and
    ``pix_fmt`` say."""
    with av.open(str(dst), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        stream.options = {**({"preset": "ultrafast"} if codec == "libx264" else {}), **(options or {})}
        for i, picture in enumerate(pictures):
            layout = "bgra" if picture.shape[2] == 4 else "bgr24"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format=layout)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def recorded(
    src: pathlib.Path,
    dst: pathlib.Path,
    seconds: float,
    *,
    audio_seconds: float,
    fmt: str = "webm",
    live: bool = True,
    size: tuple[int, int] = (256, 256),
) -> pathlib.Path:
    """The first ``seconds`` of ``src``'s picture at 24 fps with a tone running
    ``audio_seconds``, muxed as a recorder writes it: a WebM with ``live`` has no length
    in its header (as a browser's MediaRecorder makes); a file's audio may run past its
    picture."""
    codec, audio_codec = ("libvpx", "libopus") if fmt == "webm" else ("libx264", "aac")
    options = {"live": "1"} if live and fmt == "webm" else {}
    fps = 24
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = (
            {"preset": "ultrafast"} if codec == "libx264" else {"deadline": "realtime", "cpu-used": "8"}
        )
        audio = out.add_stream(audio_codec, rate=48000)
        audio.layout = "stereo"
        count = int(round(seconds * fps))
        pictures = (f.to_ndarray(format="rgb24") for f in inp.decode(video=0))
        for i, picture in enumerate(itertools.islice(pictures, count)):
            frame = av.VideoFrame.from_ndarray(
                cv2.resize(picture, size, interpolation=cv2.INTER_AREA), format="rgb24"
            )
            frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        block = 960
        t = np.arange(int(audio_seconds * 48000)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone) - block + 1, block):
            chunk = np.repeat(tone[None, start : start + block], 2, axis=0)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return dst


def panned(
    picture: pathlib.Path,
    dst: pathlib.Path,
    duration: float,
    *,
    size: tuple[int, int] = (640, 360),
    fps: int = 24,
) -> pathlib.Path:
    """A character video made from a still ``picture``: the camera pans slowly across it
    (one pixel a frame), the face kept in view."""
    image = cv2.imread(str(picture))
    width, height = size
    scale = 1.1 * height / image.shape[0]
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    side = max(0, width + int(fps * duration) - big.shape[1])
    big = cv2.copyMakeBorder(big, 0, 0, side // 2, side - side // 2, cv2.BORDER_REPLICATE)
    top = (big.shape[0] - height) // 2
    windows = (big[top : top + height, i : i + width] for i in range(int(round(duration * fps))))
    return encode(dst, windows, size, fps, {"crf": "16"})


#: Linear BT.709 to BT.2020 primaries (ITU-R BT.2087), RGB.
_BT709_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def hdr_signal(rgb: np.ndarray, transfer: str) -> np.ndarray:
    """The BT.2020 HLG or PQ signal (R'G'B', 0..1) a camera would record for an SDR
    picture ``rgb`` (uint8 RGB), with SDR white at HDR reference white (203 cd/m2) and
    the engine's highlight roll-off (``video.HDR_KNEE``) undone: written independently of
    the engine's tone map, whose inverse it is."""
    knee, white, peak = 0.8, 203.0, 1000.0
    light = (rgb.astype(np.float64) / 255) ** 2.4
    over = np.clip((light - knee) / (1 - knee), 0.0, 1 - 1e-6)
    light = np.where(light <= knee, light, knee - (1 - knee) * np.log(1 - over))
    light = np.clip(light @ _BT709_TO_2020.T, 0.0, peak / white)
    nits = light * white
    if transfer == "hlg":
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        scene = (nits / peak) ** (1 / 1.2)
        return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-9)) + c)
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = (nits / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def hdr(
    pictures: Iterator[np.ndarray],
    dst: pathlib.Path,
    transfer: str,
    fps: int = 24,
    alpha: np.ndarray | None = None,
) -> pathlib.Path:
    """An HDR clip (HEVC 10-bit, BT.2020, HLG or PQ, tagged as phones tag it) of the SDR
    ``pictures`` (uint8 RGB, even sizes); with ``alpha`` (uint8, the pictures' size),
    ProRes 4444 with that alpha channel in a MOV, tagged likewise."""
    kr, kb = 0.2627, 0.0593
    layout = "yuv420p10le" if alpha is None else "yuva444p10le"
    with av.open(str(dst), "w", format="mp4" if alpha is None else "mov") as out:
        stream = None
        for i, rgb in enumerate(pictures):
            e = hdr_signal(rgb, transfer)
            y = kr * e[..., 0] + (1 - kr - kb) * e[..., 1] + kb * e[..., 2]
            cb, cr = (e[..., 2] - y) / (2 * (1 - kb)), (e[..., 0] - y) / (2 * (1 - kr))
            if alpha is None:
                cb, cr = cb[::2, ::2], cr[::2, ::2]
            planes = [64 + 876 * y, 512 + 896 * cb, 512 + 896 * cr]
            if alpha is not None:
                planes.append(alpha.astype(np.float64) * 1023 / 255)
            h, w = y.shape
            if stream is None:
                trc = "arib-std-b67" if transfer == "hlg" else "smpte2084"
                if alpha is None:
                    stream = out.add_stream("libx265", rate=fps)
                    stream.options = {
                        "x265-params": f"log-level=error:crf=6:colorprim=bt2020:transfer={trc}:colormatrix=bt2020nc"
                    }
                else:
                    stream = out.add_stream("prores_ks", rate=fps)
                    stream.options = {"profile": "4444"}
                stream.width, stream.height, stream.pix_fmt = w, h, layout
            frame = av.VideoFrame(w, h, layout)
            if alpha is not None:  # ProRes takes its tags from the frames
                frame.color_primaries, frame.colorspace = 9, 9  # BT.2020, its non-constant matrix
                frame.color_trc = 18 if transfer == "hlg" else 16
            for plane, values in zip(frame.planes, planes, strict=True):
                view = np.frombuffer(plane, dtype=np.uint16).reshape(plane.height, plane.line_size // 2)
                view[:, : values.shape[1]] = np.round(values).astype(np.uint16)
            frame.pts = i
            out.mux(stream.encode(frame))
        assert stream is not None
        out.mux(stream.encode(None))
    return dst


#: Display matrices (MP4 ``tkhd``, 16.16 fixed point) and how to store a picture so that
#: each shows it upright: a phone's portrait video (stored turned a quarter
#: counterclockwise, shown turned clockwise), a mirrored one, one upside down.
QUARTER = ((0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30), lambda img: np.rot90(img, 1))
MIRROR = ((-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30), lambda img: img[:, ::-1])
HALF = ((-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30), lambda img: img[::-1, ::-1])


def turned(
    src: pathlib.Path,
    dst: pathlib.Path,
    *,
    seconds: float = 1.0,
    how: tuple[tuple[int, ...], Callable[[np.ndarray], np.ndarray]] = QUARTER,
) -> pathlib.Path:
    """The first ``seconds`` of ``src`` stored turned (or flipped) with a display matrix
    that shows it upright again: ``how`` is (matrix, how to store a picture)."""
    matrix, store = how
    cut(src, dst, 0.0, seconds, audio=False, store=store)
    data = bytearray(dst.read_bytes())
    identity = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    at = data.index(identity, data.index(b"tkhd"))
    data[at : at + len(identity)] = struct.pack(">9i", *matrix)
    dst.write_bytes(bytes(data))
    return dst


def frames(path: pathlib.Path, scale: float = 1.0) -> Iterator[np.ndarray]:
    """Decoded BGR frames of a video, optionally downscaled."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            img = frame.to_ndarray(format="bgr24")
            if scale != 1.0:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            yield img


def frame_hashes(path: pathlib.Path) -> list[str]:
    return [hashlib.sha256(f.tobytes()).hexdigest() for f in frames(path)]


def placed(
    picture: np.ndarray,
    side: int,
    at: tuple[int, int] | None = None,
    size: tuple[int, int] = (1280, 720),
    grey: int = 190,
) -> np.ndarray:
    """``picture`` scaled to ``side`` px square on a plain ``grey`` picture of ``size``
    (width, height), its top-left corner at ``at`` (default: centred)."""
    width, height = size
    frame = np.full((height, width, 3), grey, np.uint8)
    x, y = at if at is not None else ((width - side) // 2, (height - side) // 2)
    frame[y : y + side, x : x + side] = cv2.resize(picture, (side, side), interpolation=cv2.INTER_AREA)
    return frame
