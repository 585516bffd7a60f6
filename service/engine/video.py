"""Streaming video input: decode resampled to the output rate (encoding is ``encoder``).

Frames flow one at a time (never a whole clip in memory). Decoding resamples any input
rate to 24 fps by picking, for each output instant, the latest source frame shown at that
instant, as players show it (``shown``: turned upright, HDR tone-mapped). ``prefetch``
runs a producer on a thread of its own, a few items ahead of its consumer.
"""

from __future__ import annotations

import contextlib
import fractions
import math
import pathlib
import queue
import re
import struct
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypedDict, TypeVar, Unpack

import numpy as np

from service.engine import contracts

#: Frames buffered between a producer thread and its consumer (bounds memory).
QUEUE_DEPTH = 3

T = TypeVar("T")
_END = object()


def prefetch(source: Iterable[T], depth: int = QUEUE_DEPTH) -> Generator[T, None, None]:
    """Iterate ``source`` in a background thread, ``depth`` items ahead.

    Decoding (FFmpeg, which releases the GIL) then overlaps the consumer's work. Errors
    raised by ``source`` re-raise in the consumer; closing the returned generator early
    stops the thread.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as exc:  # handed to the consumer
            items.put(exc)

    thread = threading.Thread(target=run, name="engine-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
        thread.join()


#: Longest stretch (s) of a damaged video that ``iter_frames`` holds on its last good
#: frame: a recording cut off mid-packet loses a frame or two; a file cut in half (its
#: index intact, as a faststart MP4's is) had the last third of its frames missing and
#: the render froze for two-thirds of the clip, its audio stopping too.
DAMAGED_HOLD_S = 0.5


class FrameOptions(TypedDict, total=False):
    """``iter_timed``'s keyword options, for ``iter_frames``."""

    hold: bool
    stride: int
    nearby: bool
    longest: int | None
    cover: tuple[int, int] | None
    turned: bool


def iter_frames(
    path: pathlib.Path, fps: int, count: int, **options: Unpack[FrameOptions]
) -> Iterator[np.ndarray]:
    """``iter_timed``'s frames, without their times."""
    timed = iter_timed(path, fps, count, **options)
    with contextlib.closing(timed):
        for frame, _, _ in timed:
            yield frame


def iter_timed(
    path: pathlib.Path,
    fps: int,
    count: int,
    *,
    hold: bool = True,
    stride: int = 1,
    nearby: bool = False,
    longest: int | None = None,
    cover: tuple[int, int] | None = None,
    turned: bool = False,
) -> Generator[tuple[np.ndarray, float, float], None, None]:
    """Yield ``count`` BGR frames of ``path`` sampled at ``fps``, each with the time (s)
    its source frame is shown from and the time it is shown until; with ``longest``,
    frames whose longer side is longer come reduced to it, with ``cover`` (width,
    height), frames larger than needed to cover that come reduced to just cover it
    (``shown``); ``turned``, frames come turned half round (a performer upside down).

    Output frame i shows the source frame on screen at time i/fps: a source frame shown
    at several output instants (a source slower than ``fps``) is yielded as the same
    array at each. When the source ends early, its last frame is repeated, shown from
    and until the stream's end (``hold``: covers containers whose duration overstates
    the stream; but a stream whose decoding stopped at damaged data more than
    ``DAMAGED_HOLD_S`` short is ASSET.INVALID), or, with ``hold=False``, the frames
    simply stop there (the character-video case, which plays its frames back itself).
    With ``stride`` > 1 only output frames 0, stride, 2*stride, ... are yielded (the
    others are decoded, as they must be, but not converted). ``nearby`` (for sampling):
    frames no other frame is predicted from (most B-frames) are not decoded, so each
    frame yielded is the one on screen at its time or one a frame or two before it, for
    10-35 % less decoding (the shared clips). Every frame yielded has the size the first
    one has, even where the stream's resolution changes (``Fitted``), and shows
    non-square pixels as players do (``display_size``). Raises ASSET.INVALID if the
    file cannot be decoded at all.
    """
    produced = 0
    last: np.ndarray | None = None
    picture: Callable[[Any], np.ndarray] | None = None  # how this stream's frames are shown
    damage: list[str] = []
    t_start = 0.0  # when the source frame in hand is first shown
    with _opened(path) as container:
        stream = container.streams.video[0]
        for frame, t_end in _timed(container, stream, skip_unreferenced=nearby, damage=damage):
            if picture is None:  # its first frame (and the stream's pixel aspect) says
                picture = shown(frame, longest, cover, aspect=pixel_aspect(stream), turned=turned)
            frame_bgr = None
            while produced < count and (produced / fps) < t_end:
                if produced % stride == 0:
                    if frame_bgr is None:  # convert only frames that are shown
                        frame_bgr = picture(frame)
                    yield frame_bgr, t_start, t_end
                    last = frame_bgr
                produced += 1
            if produced >= count:
                return
            t_start = t_end
    if last is None:
        raise contracts.asset_invalid("The video contains no decodable frames.")
    if hold and damage and (count - produced) / fps > DAMAGED_HOLD_S:
        raise contracts.asset_invalid(
            f"The video is damaged or cut short: its pictures stop at {produced / fps:.1f} s "
            f"of the {count / fps:.1f} s it claims."
        )
    while hold and produced < count:  # source shorter than claimed: hold the last frame
        if produced % stride == 0:
            yield last, t_start, t_start
        produced += 1


def shown(
    first: Any,
    longest: int | None = None,
    cover: tuple[int, int] | None = None,
    *,
    aspect: fractions.Fraction | None = None,
    turned: bool = False,
) -> Callable[[Any], np.ndarray]:
    """How to convert the decoded frames of the stream whose first frame is ``first`` to
    the BGR pictures players show; with ``longest``, reduced (area average) to at most
    that many pixels on their longer side (``reduced_size``); with ``cover`` (width,
    height), to the smallest size that, scaled uniformly, still covers that canvas (a
    character video: its framing then never has to enlarge it).

    Phones store portrait video as landscape frames with a display matrix that turns (and
    for a mirrored selfie, flips) them on playback; players apply it, and so does this,
    the way FFmpeg's own ``autorotate`` does. HDR frames are tone-mapped (``ToneMap``).
    Both are read from the first frame only: a frame's side data holds the frame in a
    reference cycle (``display_matrix``). Pixels that are not square (``aspect``, the
    stream's sample aspect ratio: anamorphic video, stored 960x720 and shown 1280x720)
    are shown at their display size (``display_size``). The reduction and the aspect
    are made by FFmpeg's scaler (``Scaler``, one per stream) in the same pass as the
    conversion to BGR (or to the tone map's RGB), so a phone's 4K frame is never held,
    nor converted, at full size (a 2160x3840 frame: 3.4 ms down to 720x1280, where its
    full-size BGR would be 25 MB to carry through the render). Later frames of another
    size (a browser's WebRTC recording changes resolution with the bandwidth) come at
    the size the first one has (``Fitted``). A stream with an alpha channel is shown
    over mid-grey (``over_grey``), as a picture with one is (an HDR one, tone-mapped
    first). ``turned``: the pictures are turned half round as well (``half_turned``).
    """
    matrix = display_matrix(first)
    if turned:
        matrix = half_turned(matrix)
    wide, high = display_size(first.width, first.height, aspect)
    if cover is not None:
        across, down = (high, wide) if sideways(matrix) else (wide, high)
        covering = math.ceil(max(across, down) * max(cover[0] / across, cover[1] / down))
        longest = covering if longest is None else min(longest, covering)
    size = reduced_size(wide, high, longest)
    if size is None and (wide, high) != (first.width, first.height):
        size = (wide, high)  # non-square pixels, shown at their display size
    tone = ToneMap.for_frame(first)
    alpha = any(component.is_alpha for component in first.format.components)
    # The scaler's pixel format, and what makes BGR of it (None: it is BGR).
    finish: Callable[[np.ndarray], np.ndarray] | None
    if tone is not None:
        layout, finish = ("rgba64le", tone.over_grey) if alpha else ("rgb48le", tone)
    else:
        layout, finish = ("bgra", over_grey) if alpha else ("bgr24", None)
    fitted = Fitted(first, size, aspect, layout)
    if finish is None:
        return lambda frame: orient(fitted(frame), matrix)
    return lambda frame: orient(finish(fitted(frame)), matrix)


#: The grey a transparent pixel is shown over (pictures and videos alike).
MID_GREY = 128


def over_grey(bgra: np.ndarray) -> np.ndarray:
    """An 8-bit BGRA picture as BGR, laid over mid-grey: what is transparent in a
    character (a PNG, a ProRes 4444 or VP9-alpha video cut out of its background) shows
    as a plain backdrop, not as the colour stored under it, which is often black or a
    keyer's green spill and is whatever the exporter left."""
    alpha = bgra[..., 3:4].astype(np.float32) / 255
    return np.ascontiguousarray((bgra[..., :3] * alpha + MID_GREY * (1 - alpha)).astype(np.uint8))


#: Pixels this near square (as a fraction) are taken as square: FFmpeg's scaler tags a
#: picture resized to not quite its shape so (721x1279 from 720x1280: 11511:11536, 0.2 %
#: off), and shown so it stretched 3 px and decoded in 10.7 ms a frame, not 7.7.
SQUARE_SLACK = 0.01


def pixel_aspect(stream: Any) -> fractions.Fraction | None:
    """An open PyAV video stream's sample aspect ratio (a pixel's width over its height),
    as players take it (FFmpeg's ``av_guess_sample_aspect_ratio``: the container's, else
    the codec's); None for square pixels (within ``SQUARE_SLACK``) or none given. PyAV's
    frames do not carry theirs, so a stream's is taken for all its frames."""
    aspect = stream.sample_aspect_ratio
    if not aspect or aspect <= 0 or abs(aspect - 1) <= SQUARE_SLACK:
        return None
    return fractions.Fraction(aspect)


def display_size(width: int, height: int, aspect: fractions.Fraction | None) -> tuple[int, int]:
    """(width, height) of a picture stored ``width`` x ``height`` in pixels ``aspect``
    times as wide as high (None: square), as players show it: the side the aspect
    stretches is the one enlarged, the other kept (mpv's ``mp_image_params_get_dsize``),
    so no stored pixel is lost: 960x720 at 4:3 shows 1280x720, 720x480 at 8:9 shows
    720x540. Each is rounded to a whole pixel (mpv truncates)."""
    if aspect is None or aspect == 1:
        return width, height
    if aspect > 1:
        return max(1, round(width * aspect)), height
    return width, max(1, round(height / aspect))


#: How near (as a fraction) a later frame's shape must be to the first's to fill its
#: size exactly; a size rounded to whole pixels is that near (426x240 for 16:9: 0.2 %).
SHAPE_SLACK = 0.01


def fitted_size(
    width: int, height: int, aspect: fractions.Fraction | None, box: tuple[int, int]
) -> tuple[int, int]:
    """The size at which a frame stored ``width`` x ``height`` (pixels of ``aspect``) is
    shown in a ``box`` (width, height) an earlier frame set: scaled uniformly to fit
    inside it, as a player shows a stream whose resolution changes in the window it
    opened for the first (a shape within ``SHAPE_SLACK`` of the box's fills it)."""
    wide, high = display_size(width, height, aspect)
    if abs((wide * box[1]) / (high * box[0]) - 1) <= SHAPE_SLACK:
        return box
    scale = min(box[0] / wide, box[1] / high)
    return min(box[0], max(1, round(wide * scale))), min(box[1], max(1, round(high * scale)))


def boxed(picture: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """``picture`` (rows, columns, channels) centred on a black one of ``box`` (width,
    height); itself if it is that size already."""
    high, wide = picture.shape[:2]
    if (wide, high) == box:
        return picture
    out = np.zeros((box[1], box[0], *picture.shape[2:]), picture.dtype)
    top, left = (box[1] - high) // 2, (box[0] - wide) // 2
    out[top : top + high, left : left + wide] = picture
    return out


class Fitted:
    """Converts one stream's decoded frames (``Scaler``) to arrays of one size: the size
    its first frame comes at (``size``, else as stored), whatever size later ones have.

    Browsers' recorders (WebRTC, MediaRecorder) change a stream's resolution mid-way as
    the bandwidth or the camera changes; the render, built around the first frame's
    size, failed on such a character video (arrays of different sizes), and such a
    reference distorted the whole render. A frame of another size is scaled in the same pass to fit
    the first's size (``fitted_size``: the same shape fills it exactly; another is
    centred on black bands, as a player shows it in the window it opened). Frames the
    first's size convert exactly as before.
    """

    def __init__(
        self, first: Any, size: tuple[int, int] | None, aspect: fractions.Fraction | None, pixel_format: str
    ) -> None:
        self._stored = (first.width, first.height)
        self._size, self._box = size, size or self._stored
        self._aspect, self._format = aspect, pixel_format
        self._scaler = Scaler()

    def __call__(self, frame: Any) -> np.ndarray:
        """``frame`` as an array of the stream's pixel format, the size its first frame set."""
        if (frame.width, frame.height) == self._stored:
            return self._scaler(frame, self._format, self._size)
        size = fitted_size(frame.width, frame.height, self._aspect, self._box)
        return boxed(self._scaler(frame, self._format, size), self._box)


def reduced_size(width: int, height: int, longest: int | None) -> tuple[int, int] | None:
    """(width, height) scaled down to ``longest`` pixels on the longer side, each rounded
    to an even number; None if the frame is no longer than that (or no ``longest``)."""
    if longest is None or max(width, height) <= longest:
        return None
    scale = longest / max(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


class Scaler:
    """Converts one stream's decoded frames to arrays of a pixel format, scaled (area
    average where reduced, in the same pass) to a size if asked: FFmpeg's scaler, set up
    once for the stream and kept (set up again only if a frame's size changes), on the
    calling thread.

    Left to itself, PyAV sets up a new scaler for every frame, and with it a pool of
    threads to share the frame among: on a 720x1280 frame that is 1.4 ms (2.0 ms of
    CPU, two threads started and stopped) against 0.34 ms kept and on one thread, for
    the same pixels. The decoding and the render already keep both cores busy.
    """

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()

    def __call__(self, frame: Any, pixel_format: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """``frame`` as an array of ``pixel_format``, scaled to ``size`` (width, height)
        if given. Without a size the plain conversion runs: the area flag at the frame's
        own size is not promised to give the same pixels."""
        if size is None:
            out = self._reformatter.reformat(frame, format=pixel_format, threads=1)
        else:
            out = self._reformatter.reformat(
                frame, format=pixel_format, width=size[0], height=size[1], interpolation="AREA", threads=1
            )
        return np.asarray(out.to_ndarray())


#: FFmpeg's transfer characteristics of HDR video: PQ (SMPTE ST 2084) and HLG (ARIB STD-B67).
TRANSFER_PQ, TRANSFER_HLG = 16, 18
#: HDR shown in SDR: its reference white (ITU-R BT.2408: 203 cd/m2) becomes SDR white,
#: brighter light rolls off smoothly above ``HDR_KNEE`` of SDR white up to ``HDR_PEAK``.
HDR_WHITE = 203.0
HDR_PEAK = 1000.0
HDR_KNEE = 0.8
#: BT.2020 to BT.709 primaries, on linear light (ITU-R BT.2087), rows as B, G, R out.
_BT2020_TO_709_BGR = np.array(
    [[-0.0182, -0.1006, 1.1187], [-0.1246, 1.1329, -0.0083], [1.6605, -0.5876, -0.0728]], dtype=np.float32
)


class ToneMap:
    """Shows an HDR frame (BT.2020, HLG or PQ) as an SDR BGR picture (BT.709 primaries).

    Converted as is, an HDR frame's signal looks flat and grey in SDR: HLG and PQ code
    light differently from SDR's gamma, and BT.2020's wider primaries read as muted
    colours. Here the signal becomes display light (HLG: its inverse OETF and the OOTF
    of a 1000 cd/m2 display, per channel; PQ: its EOTF), relative to reference white;
    the primaries are converted, highlights roll off (``HDR_KNEE``), and the result is
    coded with SDR's display gamma (2.4). Lookup tables hold every non-linear step, and
    one compiled pass applies them (``raster.tone_map``: 7-8 ms a 720p frame, on top of
    the 4 ms of converting it to 16-bit RGB).
    """

    _LEVELS = 4096  # table entries: 12 bits of signal, 12 bits of (square-root) light

    def __init__(self, transfer: int) -> None:
        signal = np.arange(self._LEVELS, dtype=np.float64) / (self._LEVELS - 1)
        if transfer == TRANSFER_HLG:
            a, b, c = 0.17883277, 0.28466892, 0.55991073
            scene = np.where(signal <= 0.5, signal**2 / 3, (np.exp((signal - c) / a) + b) / 12)
            nits = HDR_PEAK * scene**1.2
        else:
            m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
            p = signal ** (1 / m2)
            nits = 10000 * (np.maximum(p - c1, 0) / (c2 - c3 * p)) ** (1 / m1)
        self._linear = (nits / HDR_WHITE).astype(np.float32)
        top = HDR_PEAK / HDR_WHITE
        self._matrix = (_BT2020_TO_709_BGR / top).astype(np.float32)  # 1: the brightest shown
        light = np.linspace(0.0, 1.0, self._LEVELS) ** 2 * top
        over = np.maximum(light - HDR_KNEE, 0.0) / (1 - HDR_KNEE)
        shown = np.minimum(light, HDR_KNEE) + (1 - HDR_KNEE) * (1 - np.exp(-over))
        self._code = np.round(255 * shown ** (1 / 2.4)).astype(np.uint8)

    @classmethod
    def for_frame(cls, frame: Any) -> ToneMap | None:
        """The tone map for a video whose first decoded frame is ``frame``; None if SDR."""
        transfer = getattr(frame, "color_trc", None)
        return cls(transfer) if transfer in (TRANSFER_PQ, TRANSFER_HLG) else None

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        """The SDR picture of an HDR frame's ``signal``: its BT.2020 R'G'B' as 16-bit RGB
        (``Scaler``'s ``rgb48le``, by the frame's own matrix and range)."""
        from service.engine import raster

        return raster.tone_map(signal, self._linear, self._matrix, self._code)

    def over_grey(self, signal: np.ndarray) -> np.ndarray:
        """The SDR picture of an HDR frame with alpha (``rgba64le``), laid over mid-grey
        (``over_grey``): its colour tone-mapped, its alpha kept."""
        shown = np.empty((*signal.shape[:2], 4), np.uint8)
        shown[..., :3] = self(np.ascontiguousarray(signal[..., :3]))
        shown[..., 3] = signal[..., 3] >> 8
        return over_grey(shown)


def display_matrix(frame: Any) -> tuple[int, ...] | None:
    """The frame's display matrix (9 fixed-point values, FFmpeg's layout), if it has one.

    Reading a frame's side data ties the frame into a reference cycle (PyAV 18): only
    the cyclic collector frees it then, so read it once per stream, not per frame (per
    frame, decoding the shared character video held 300 MB more).
    """
    side = getattr(frame, "side_data", None)
    data = None if side is None else side.get("DISPLAYMATRIX")
    if data is None:
        return None
    raw = bytes(data)
    return struct.unpack("<9i", raw[:36]) if len(raw) >= 36 else None


def _display_angle(matrix: tuple[int, ...]) -> float:
    """The turn the matrix asks for, in degrees clockwise, 0 <= angle < 360 (FFmpeg's
    ``get_rotation``: minus ``av_display_rotation_get``, rounded)."""
    a, b, c, d = (v / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if math.hypot(a, c) == 0 or math.hypot(b, d) == 0:
        return 0.0
    theta = round(math.degrees(math.atan2(b / math.hypot(b, d), a / math.hypot(a, c))))
    return theta - 360 * math.floor(theta / 360 + 0.9 / 360)


#: The display matrix of a picture shown as stored.
AS_STORED = (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)


def half_turned(matrix: tuple[int, ...] | None) -> tuple[int, ...]:
    """``matrix`` (None: ``AS_STORED``) followed by a half turn: its 2x2 part negated. A
    half turn commutes with every turn and flip, so ``orient`` then turns the picture as
    ``matrix`` asks and half round, in the one pass."""
    a, b, u, c, d, v, *rest = AS_STORED if matrix is None else matrix
    return (-a, -b, u, -c, -d, v, *rest)


def sideways(matrix: tuple[int, ...] | None) -> bool:
    """Whether the matrix turns the picture a quarter (its width and height swap)."""
    return matrix is not None and min(abs(_display_angle(matrix) - q) for q in (90, 270)) < 1.0


def orient(image: np.ndarray, matrix: tuple[int, ...] | None) -> np.ndarray:
    """``image`` (rows, columns, ...) turned and flipped as ``matrix`` asks, by quarter
    turns only (FFmpeg's ``autorotate``: other angles are left as stored)."""
    if matrix is None:
        return image
    theta = _display_angle(matrix)
    if abs(theta - 90) < 1.0:  # clockwise; or, with a flip, FFmpeg's "cclock_flip"
        out = image.swapaxes(0, 1) if matrix[3] > 0 else np.rot90(image, -1)
    elif abs(theta - 270) < 1.0:  # counterclockwise; or "clock_flip"
        out = np.rot90(image, 1) if matrix[3] >= 0 else np.flipud(np.rot90(image, -1))
    elif abs(theta - 180) < 1.0:
        out = image[:, ::-1] if matrix[0] < 0 else image
        out = out[::-1] if matrix[4] < 0 else out
    elif abs(theta) < 1.0 or abs(theta - 360) < 1.0:
        out = image[::-1] if matrix[4] < 0 else image
    else:
        return image
    return out if out is image else np.ascontiguousarray(out)


def stream_seconds(path: pathlib.Path) -> float | None:
    """The video stream's own length, or None if it cannot be read. (Not the
    container's, which an audio track longer than the picture stretches.)

    By its header if it gives one, else by reading its packets (:func:`demuxed_seconds`).
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            seconds = stream_header_seconds(container.streams.video[0])
            return seconds if seconds is not None else _packet_seconds(container)
    except (av.error.FFmpegError, IndexError):
        return None


def stream_header_seconds(stream: Any) -> float | None:
    """An open PyAV stream's length by its header (its duration, else its frame count
    over its rate, else the per-track ``DURATION`` tag Matroska muxers write), or None.

    A length is the span from the first frame's start to the last one's end, wherever
    the clock starts. MP4 and MOV give it so, edit lists applied. The Matroska tag does
    not: FFmpeg's muxer writes the track's end time there, mkvmerge its span, so it is
    taken only for a track that starts at 0, where the two agree; for one that starts
    later (a remux with an offset, a copy whose audio starts first) this is None and
    the packets say (``demuxed_seconds``): its end had a 3.5 s clip offset by 10 s
    taken as 13.5 s long, and a plain remux starting at 0.023 s one frame long."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    tag = _MATROSKA_DURATION.fullmatch(str(stream.metadata.get("DURATION", "")).strip())
    if tag and stream.start_time == 0:
        hours, minutes, seconds = tag.groups()
        total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        return total if total > 0 else None
    return None


_MATROSKA_DURATION = re.compile(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def demuxed_seconds(path: pathlib.Path) -> float | None:
    """The video stream's length found by reading its packets (not decoding them): from
    the first packet's start to the last one's end, the last lasting as long as the
    packets before it on average when it does not say; packets an edit list cuts (marked
    discarded, never shown) left out. For files whose header gives no length, as a
    browser's recorder (MediaRecorder) and other live muxers write them, and Matroska
    files that start past 0 (``stream_header_seconds``; 4-12 ms for Matroska clips of
    3.5 s to 28 s). None if the stream has no timed packet."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            return _packet_seconds(container)
    except (av.error.FFmpegError, IndexError):
        return None


def _packet_seconds(container: Any) -> float | None:
    """:func:`demuxed_seconds` on an open container (read from where it stands)."""
    import av

    stream = container.streams.video[0]
    first = last = None
    count = 0
    last_duration: float = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.is_discard:
                continue
            count += 1
            first = packet.pts if first is None else min(first, packet.pts)
            if last is None or packet.pts >= last:
                last, last_duration = packet.pts, packet.duration or 0
    except av.error.FFmpegError:
        pass  # a damaged tail: the packets read so far
    if first is None or last is None or stream.time_base is None:
        return None
    if not last_duration and count > 1:
        last_duration = (last - first) / (count - 1)
    seconds = float((last - first + last_duration) * stream.time_base)
    return seconds if seconds > 0 else None


def start_time(container: Any) -> float | None:
    """When (s, on the container's clock) an open container's video shows its first
    frame: the zero of the times ``iter_frames`` samples at, so of the render's clock
    (None if no frame of it decodes). Decodes from the container's current position."""
    import av

    with contextlib.suppress(av.error.FFmpegError):
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None:
                return float(frame.time)
    return None


def _opened(path: pathlib.Path) -> Any:
    """The open PyAV container of ``path``; ASSET.INVALID if it cannot be opened."""
    import av

    try:
        return av.open(str(path), mode="r")
    except Exception:
        raise contracts.asset_invalid("The video could not be opened.") from None


def _timed(
    container: Any, stream: Any, skip_unreferenced: bool = False, damage: list[str] | None = None
) -> Iterator[tuple[Any, float]]:
    """Yield (decoded av.VideoFrame, time its display ends in s from the stream's start).

    A frame's display ends when the next one starts; the last one lasts one frame period
    (``_last_frame_seconds``). Times count from the first frame's, whatever the
    container's clock starts at (a Matroska file remuxed with an offset starts its frames
    at 10 s). ``skip_unreferenced``: frames no other frame is predicted from are not
    decoded (the frame before each stays on screen); the others decode exactly as they
    otherwise would. Decoding stops at damaged data, keeping what decoded; what was
    wrong is appended to ``damage`` if given: a decoding error, a packet the demuxer
    marks corrupt, or fewer packets than the file's index lists (a file cut short with
    its index intact; the decoder's threads end such a stream without an error).
    """
    import av

    codec = decoder(stream)
    codec.thread_type = "AUTO"
    if skip_unreferenced:
        codec.skip_frame = "NONREF"
    start = None
    pending: tuple[Any, float] | None = None
    packets = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                if packet.is_corrupt and damage is not None:
                    damage.append(f"packet {packets} is corrupt")
            for frame in codec.decode(packet):
                t = frame.time
                if t is None:
                    continue
                if start is None:
                    start = t
                t -= start
                if pending is not None:
                    prev_frame, _ = pending
                    yield prev_frame, t
                pending = (frame, t)
    except av.error.FFmpegError as exc:  # a damaged tail: keep what decoded
        if damage is not None:
            damage.append(str(exc))
    if damage is not None and 0 < packets < stream.frames:
        damage.append(f"{packets} of the {stream.frames} packets its index lists")
    if pending is not None:
        frame, t = pending
        yield frame, t + _last_frame_seconds(stream)


#: Decoders that read the alpha plane a WebM stores beside each VP8 or VP9 frame (in
#: Matroska's BlockAdditional, the stream tagged ``alpha_mode``): FFmpeg's own VP8 and
#: VP9 decoders drop it, and a cut-out character would show the colour under it.
ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


def decoder(stream: Any) -> Any:
    """The codec context to decode an open PyAV video ``stream`` with: its own, or, for a
    VP8 or VP9 stream with an alpha channel, libvpx's (``ALPHA_DECODERS``)."""
    import av

    name = ALPHA_DECODERS.get(stream.codec_context.name)
    if name is None or stream.metadata.get("alpha_mode") != "1" or name not in av.codecs_available:
        return stream.codec_context
    return av.CodecContext.create(name, "r")


def _last_frame_seconds(stream: Any) -> float:
    """How long a stream's last frame is taken to show: one frame period, less half a
    tick of the stream's clock. Its start is on that clock, rounded to a tick (Matroska's
    is 1 ms), and could put its end past the true one: a 1.5 s clip remuxed to Matroska
    (its last frame at 1.467 s, not 1.4667) played a 37th frame at 24 fps where its MP4
    played 36. Less half a tick, the end is never past the true one; the frames shown
    are the same (held to the end) and a 30 fps MP4's 1/15360 s clock moves it 33 us."""
    rate = stream.average_rate or stream.guessed_rate or 30
    tick = float(stream.time_base) if stream.time_base else 0.0
    return 1.0 / float(rate) - tick / 2
