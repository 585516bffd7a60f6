"""Identify an uploaded image or video cheaply and refuse what the engine cannot use.

`probe` is the gate the API uses for uploads and data URIs, so it must turn *any* bad
input (corrupt bytes, truncated files, text renamed .mp4, decompression bombs,
unsupported codecs) into ``EngineError("ASSET.INVALID", ...)`` and never raise anything
else. Images are recognised by their magic bytes and measured from their headers alone
(no pixel is decoded, so a 50,000 x 50,000 PNG costs nothing to refuse). Videos are
opened with PyAV, measured from the container, and one frame is decoded to prove the
stream is real. ``load_image`` decodes a picture as the engine and the dashboard's
thumbnails show it.
"""

from __future__ import annotations

import os
import pathlib
import struct
from typing import Any, BinaryIO

import numpy as np

from service.engine import contracts, video

#: Largest image accepted, in pixels (a decompression-bomb guard).
MAX_IMAGE_PIXELS = 40_000_000
#: Largest video frame accepted, in pixels (4096 x 4096).
MAX_VIDEO_PIXELS = 4096 * 4096
#: Video codecs accepted, by FFmpeg decoder name.
VIDEO_CODECS = {
    "h264": "h264",
    "hevc": "h265",
    "vp8": "vp8",
    "vp9": "vp9",
    "av1": "av1",
    "libdav1d": "av1",
    "libaom-av1": "av1",
    "prores": "prores",
}

_HEADER_BYTES = 64 * 1024
#: Most JPEG marker segments walked to find the frame header (each is at most 64 KiB; a
#: phone's EXIF, XMP and ICC segments can put the header well past ``_HEADER_BYTES``).
_JPEG_SEGMENTS = 1024


def probe(path: str | os.PathLike[str], *, video_only: bool = False) -> contracts.MediaInfo:
    """Describe the media at ``path``; raise ASSET.INVALID if it is unusable. With
    ``video_only`` (a performance reference) a picture of any kind is refused as not a
    video (advising a GIF's sender to use JPEG, PNG or WebP would be wrong there)."""
    path = pathlib.Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_BYTES)
            image_format = _image_format(head)
            if image_format is not None and not video_only:
                return _probe_image(head, image_format, fh)
    except OSError as exc:
        raise contracts.asset_invalid(f"The file could not be read ({exc.strerror}).") from None
    if not head:
        raise contracts.asset_invalid("The file is empty.")
    other = _other_image_format(head)
    if video_only and (image_format or other):
        raise contracts.asset_invalid(
            "The reference must be a video (MP4, MOV or WebM) of a performer; this file is a "
            f"{other or (image_format or '').upper()} picture."
        )
    if other is not None:
        raise contracts.asset_invalid(f"{other} images are not supported; use JPEG, PNG or WebP.")
    try:
        return _probe_video(path)
    except contracts.EngineError:
        raise
    except Exception:  # PyAV raises many error types for hostile input; all mean "bad file".
        raise contracts.asset_invalid(
            "The file is not a supported image (JPEG, PNG, WebP) or video (MP4, MOV, WebM)."
        ) from None


def load_image(path: pathlib.Path) -> np.ndarray:
    """Decode a picture to BGR (EXIF orientation applied, transparency over mid-grey)."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    # A picture that cannot be transparent is decoded once, as 8-bit BGR with its EXIF
    # orientation (a 6000 x 6000 JPEG: 0.3 s, where decoding it twice took 1.2 s).
    head = data[:TRANSPARENCY_HEAD].tobytes()
    opaque = not may_be_transparent(head)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if opaque else cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise contracts.asset_invalid("The character image could not be decoded.")
    if opaque:
        return image
    key = png_grey_key(head) if image.ndim == 2 else None
    if key is not None:  # a grey PNG whose one grey level is transparent: made an alpha
        opaque_at = np.where(image == key, 0, 65535 if image.dtype == np.uint16 else 255).astype(image.dtype)
        image = np.dstack([cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), opaque_at])
    if image.ndim == 3 and image.shape[2] == 4:
        if image.dtype != np.uint8:
            image = (image / 257).astype(np.uint8)
        # IMREAD_UNCHANGED skips EXIF rotation; PNG/WebP with alpha rarely carry it.
        return video.over_grey(image)
    # Re-decoded to apply EXIF orientation (grey pictures too), as 8-bit BGR.
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def picture_format(path: str | os.PathLike[str]) -> str | None:
    """'jpeg', 'png' or 'webp' if ``path`` starts as a picture ``load_image`` decodes, else None."""
    with open(path, "rb") as fh:
        return _image_format(fh.read(16))


def _image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


#: How much of a picture's start ``may_be_transparent`` reads: a PNG's transparency
#: chunk comes before its image data, after the palette and any text or colour profile.
TRANSPARENCY_HEAD = 1 << 20


def may_be_transparent(head: bytes) -> bool:
    """Whether a picture starting with ``head`` may have transparency: not a JPEG, a
    simple lossy WebP, a WebP whose header says it has no alpha, nor a PNG without an
    alpha channel or a transparency chunk before its image data (a PNG not settled
    within ``head`` may)."""
    kind = _image_format(head)
    if kind == "jpeg":
        return False
    if kind == "webp" and len(head) >= 25:
        chunk = head[12:16]
        if chunk == b"VP8 ":
            return False
        if chunk == b"VP8X":  # extended: flags byte, alpha bit
            return bool(head[20] & 0x10)
        if chunk == b"VP8L":  # lossless: the alpha-is-used bit after the 14-bit sizes
            return bool(head[24] & 0x10)
    if kind != "png" or len(head) < 26 or head[25] in (4, 6):  # colour type: with alpha
        return True
    settled, transparency = _png_transparency(head)
    return not settled or transparency is not None


def _png_transparency(head: bytes) -> tuple[bool, bytes | None]:
    """Whether ``head``, a PNG's start, settles if it has a tRNS chunk before its image
    data, and that chunk's body (None: it has none)."""
    at = 8
    while at + 8 <= len(head):
        size, chunk = int.from_bytes(head[at : at + 4], "big"), head[at + 4 : at + 8]
        if chunk == b"tRNS":
            return True, head[at + 8 : at + 8 + size]
        if chunk in (b"IDAT", b"IEND"):
            return True, None
        at += 12 + size
    return False, None


def png_grey_key(head: bytes) -> int | None:
    """The grey level a grey PNG starting with ``head`` makes transparent (its tRNS
    chunk's), on the scale it decodes to (0-255, or 0-65535 at 16 bits); None for any
    other picture. OpenCV keeps such a picture one grey channel and ignores the key."""
    if _image_format(head) != "png" or len(head) < 26 or head[25] != 0:  # colour type 0: grey
        return None
    _, transparency = _png_transparency(head)
    if transparency is None or len(transparency) < 2:
        return None
    depth, key = head[24], int.from_bytes(transparency[:2], "big")
    return key if depth in (8, 16) else key * (255 // ((1 << depth) - 1))


#: ISO base media ``ftyp`` brands of still-image files (HEIF/HEIC, AVIF), which FFmpeg
#: would otherwise open as a video container.
_STILL_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"hevx": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


def _other_image_format(head: bytes) -> str | None:
    """The name of an image format the engine does not take (a phone's HEIC, a GIF...),
    recognised by its magic bytes, or None."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if (
        head.startswith(b"BM")
        and len(head) >= 26
        and struct.unpack("<I", head[14:18])[0] in (12, 40, 52, 56, 64, 108, 124)
    ):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _STILL_BRANDS:
        return _STILL_BRANDS[head[8:12]]
    return None


def _probe_image(head: bytes, image_format: str, fh: BinaryIO) -> contracts.MediaInfo:
    try:
        size = (
            _jpeg_size(head, fh)
            if image_format == "jpeg"
            else {"png": _png_size, "webp": _webp_size}[image_format](head)
        )
    except (struct.error, IndexError, ValueError):
        size = None
    if size is None:
        raise contracts.asset_invalid(f"The {image_format.upper()} image is corrupt or truncated.")
    width, height = size
    if width <= 0 or height <= 0:
        raise contracts.asset_invalid(f"The {image_format.upper()} image has no pixels.")
    if width * height > MAX_IMAGE_PIXELS:
        raise contracts.asset_invalid(
            f"The image is {width}x{height}; images over {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels are not accepted."
        )
    return contracts.MediaInfo(
        kind="image",
        format=image_format,
        codec=None,
        width=width,
        height=height,
        duration_s=None,
        fps=None,
        has_audio=False,
    )


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _jpeg_size(head: bytes, fh: BinaryIO | None = None) -> tuple[int, int] | None:
    """Walk the JPEG marker segments to the first start-of-frame (SOFn) header. The size
    is as the picture is shown: an EXIF orientation that turns it a quarter (a phone's
    portrait photo, stored landscape) swaps width and height, as decoding does.

    ``head`` is the file's start; segments past it are read from ``fh`` (a camera's
    EXIF with maker notes and thumbnail, XMP and ICC profiles can fill more than
    ``_HEADER_BYTES``: such a photo was refused as truncated)."""

    def read(at: int, size: int) -> bytes:
        if at + size <= len(head) or fh is None:
            return head[at : at + size]
        fh.seek(at)
        return fh.read(size)

    pos = 2
    turned = False
    for _ in range(_JPEG_SEGMENTS):
        segment = read(pos, 4)
        if len(segment) < 4:
            return None
        if segment[0] != 0xFF:
            return None
        marker = segment[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", segment[2:4])
        if marker == 0xE1 and length >= 8 and read(pos + 4, 6) == b"Exif\x00\x00":
            turned = _exif_orientation(read(pos + 10, length - 8)) in (5, 6, 7, 8)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", read(pos + 5, 4))
            return (height, width) if turned else (width, height)
        if marker == 0xDA or length < 2:  # scan data before any frame header: malformed
            return None
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (1-8) of an EXIF block's first directory, if it has one (a
    malformed block has none: it does not make the picture unusable)."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    try:
        (directory,) = struct.unpack(order + "I", tiff[4:8])
        (entries,) = struct.unpack(order + "H", tiff[directory : directory + 2])
        for i in range(entries):
            at = directory + 2 + 12 * i
            tag, kind, _ = struct.unpack(order + "HHI", tiff[at : at + 8])
            if tag == 0x0112 and kind == 3:  # Orientation, a SHORT
                return int(struct.unpack(order + "H", tiff[at + 8 : at + 10])[0])
    except struct.error:
        return None
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def _shown_size(stream: Any) -> tuple[int, int]:
    """An open video stream's frame size as players show it, before any display matrix
    turns it: non-square pixels at their display size (``video.display_size``: stored
    960x720 at 4:3 is 1280x720), as ``video.iter_frames`` yields them. ASSET.INVALID if
    the stored or the shown size is empty or over ``MAX_VIDEO_PIXELS``."""
    stored = stream.codec_context.width, stream.codec_context.height
    width, height = video.display_size(*stored, video.pixel_aspect(stream))
    if min(*stored, width, height) <= 0 or max(stored[0] * stored[1], width * height) > MAX_VIDEO_PIXELS:
        raise contracts.asset_invalid(f"The video frame size {width}x{height} is not supported.")
    return width, height


def _probe_video(path: pathlib.Path) -> contracts.MediaInfo:
    import av  # lazy: keeps `import service.engine` light

    with av.open(str(path), mode="r", timeout=10.0) as container:
        container_name = container.format.name
        if "mp4" in container_name or "mov" in container_name:
            fmt = "mov" if str(container.metadata.get("major_brand", "")).startswith("qt") else "mp4"
        elif "matroska" in container_name or "webm" in container_name:
            fmt = "webm"
        else:
            raise contracts.asset_invalid("Videos must be MP4, MOV or WebM files.")
        if not container.streams.video:
            raise contracts.asset_invalid("The file has no video stream.")
        stream = container.streams.video[0]
        codec = VIDEO_CODECS.get(stream.codec_context.name)
        if codec is None:
            raise contracts.asset_invalid(
                f"The video codec '{stream.codec_context.name}' is not supported "
                "(use H.264, H.265, VP8, VP9, AV1 or ProRes)."
            )
        width, height = _shown_size(stream)
        # The picture's own length: the container's would take in a longer audio track.
        duration_s = video.stream_header_seconds(stream)
        if duration_s is None:
            duration_s = video.demuxed_seconds(path)
        if not duration_s or duration_s <= 0:
            raise contracts.asset_invalid("The video's duration could not be determined.")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        has_audio = bool(container.streams.audio)
        # One decoded frame proves the stream is real (catches truncated/garbage payloads).
        frame = next(container.decode(stream), None)
        if frame is None:
            raise contracts.asset_invalid("The video contains no decodable frames.")
        if video.sideways(video.display_matrix(frame)):  # shown turned (a phone's portrait video)
            width, height = height, width
    return contracts.MediaInfo(
        kind="video",
        format=fmt,
        codec=codec,
        width=width,
        height=height,
        duration_s=duration_s,
        fps=fps,
        has_audio=has_audio,
    )
