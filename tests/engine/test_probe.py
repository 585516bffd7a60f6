"""probe(): accepted formats are described; anything else is a clean ASSET.INVALID."""

from __future__ import annotations

import pathlib
import struct
import zlib

import av
import cv2
import numpy as np
import pytest

from service import engine
from service.engine import assets, video
from tests.engine import clips


@pytest.fixture(scope="module")
def photo(media: pathlib.Path) -> np.ndarray:
    return cv2.imread(str(media / "character_photo.jpg"))


@pytest.mark.parametrize(("ext", "fmt"), [(".jpg", "jpeg"), (".png", "png"), (".webp", "webp")])
def test_probe_reads_image_size_and_format(
    tmp_path: pathlib.Path, photo: np.ndarray, ext: str, fmt: str
) -> None:
    path = tmp_path / f"photo{ext}"
    cv2.imwrite(str(path), cv2.resize(photo, (300, 200)))
    info = engine.probe(path)
    assert (info.kind, info.format, info.width, info.height) == ("image", fmt, 300, 200)
    assert info.duration_s is None and info.codec is None and not info.has_audio


def test_probe_reads_lossless_webp(tmp_path: pathlib.Path, photo: np.ndarray) -> None:
    path = tmp_path / "lossless.webp"
    cv2.imwrite(str(path), photo[:90, :70], [cv2.IMWRITE_WEBP_QUALITY, 101])
    info = engine.probe(path)
    assert (info.format, info.width, info.height) == ("webp", 70, 90)


def _with_exif(jpeg: bytes, tiff: bytes) -> bytes:
    """``jpeg`` with an EXIF block (APP1) holding ``tiff`` right after its start marker."""
    block = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block + jpeg[2:]


def _orientation(value: int, order: str = "<") -> bytes:
    """A TIFF block whose one directory entry is the Orientation tag."""
    mark = b"II" if order == "<" else b"MM"
    return (
        mark
        + struct.pack(order + "HI", 42, 8)
        + struct.pack(order + "H", 1)
        + struct.pack(order + "HHIHH", 0x0112, 3, 1, value, 0)
        + struct.pack(order + "I", 0)
    )


@pytest.mark.parametrize(
    ("tiff", "shown"),
    [
        (_orientation(6), (200, 300)),  # a phone's portrait photo: turned a quarter
        (_orientation(8, ">"), (200, 300)),
        (_orientation(3), (300, 200)),  # upside down: the same size
        (b"II*\x00\xff\xff\xff\xff", (300, 200)),  # a broken block is ignored
    ],
)
@pytest.mark.parametrize("grey", [False, True])
def test_probe_reports_a_jpeg_as_shown_after_its_exif_orientation(
    tmp_path: pathlib.Path, photo: np.ndarray, tiff: bytes, shown: tuple[int, int], grey: bool
) -> None:

    picture = cv2.resize(photo, (300, 200))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY) if grey else picture)
    assert ok
    path = tmp_path / "oriented.jpg"
    path.write_bytes(_with_exif(encoded.tobytes(), tiff))
    info = engine.probe(path)
    assert (info.width, info.height) == shown
    decoded = assets.load_image(path)
    assert decoded.shape == (shown[1], shown[0], 3)  # as the engine decodes it, grey or not


@pytest.mark.parametrize("exif_first", [True, False])
def test_probe_finds_a_jpegs_size_past_large_metadata(
    tmp_path: pathlib.Path, photo: np.ndarray, exif_first: bool
) -> None:
    """A camera's EXIF (maker notes, thumbnail), XMP and ICC segments can fill more than
    the 64 KiB first read: the frame header after them used to go unseen, and the photo
    was refused as truncated."""
    ok, encoded = cv2.imencode(".jpg", cv2.resize(photo, (300, 200)))
    assert ok
    jpeg = encoded.tobytes()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + bytes(40_000)
    icc = b"ICC_PROFILE\x00\x01\x01" + bytes(30_000)
    metadata = b"".join(
        b"\xff" + m + struct.pack(">H", len(d) + 2) + d for m, d in ((b"\xe1", xmp), (b"\xe2", icc))
    )
    if exif_first:  # the orientation in the first read, the frame header past it
        path_bytes = _with_exif(jpeg[:2] + metadata + jpeg[2:], _orientation(6))
    else:  # the orientation itself past the first read
        path_bytes = jpeg[:2] + metadata + _with_exif(jpeg, _orientation(6))[2:]
    path = tmp_path / "camera.jpg"
    path.write_bytes(path_bytes)
    assert len(path_bytes) > 70_000
    info = engine.probe(path)
    assert (info.format, info.width, info.height) == ("jpeg", 200, 300)


def _counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The flags of every ``cv2.imdecode`` call from now on."""
    flags: list[int] = []
    decode = cv2.imdecode

    def counted(data: np.ndarray, flag: int) -> np.ndarray | None:
        flags.append(flag)
        return decode(data, flag)

    monkeypatch.setattr(cv2, "imdecode", counted)
    return flags


def test_a_jpeg_is_decoded_once(
    tmp_path: pathlib.Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JPEG has no transparency, so it is not decoded a first time to look for it (a
    6000 px photo took 1.2 s and two copies of itself)."""

    path = tmp_path / "photo.jpg"
    path.write_bytes(
        _with_exif(cv2.imencode(".jpg", cv2.resize(photo, (300, 200)))[1].tobytes(), _orientation(6))
    )
    flags = _counting_decodes(monkeypatch)
    assert assets.load_image(path).shape == (300, 200, 3)  # turned by its EXIF
    assert flags == [cv2.IMREAD_COLOR]


@pytest.mark.parametrize("kind", ["colour", "grey 16-bit", "palette"])
def test_an_opaque_png_is_decoded_once(
    tmp_path: pathlib.Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A PNG with neither an alpha channel nor a transparency chunk is decoded once, to
    the same pixels as before."""
    from PIL import Image

    picture = cv2.resize(photo, (120, 80))
    path = tmp_path / "opaque.png"
    if kind == "colour":
        cv2.imwrite(str(path), picture)
    elif kind == "grey 16-bit":
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    else:
        Image.fromarray(picture[..., ::-1]).quantize(64).save(path)
    expected = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    flags = _counting_decodes(monkeypatch)
    assert np.array_equal(assets.load_image(path), expected)
    assert flags == [cv2.IMREAD_COLOR]


@pytest.mark.parametrize("quality", [90, 101], ids=["lossy", "lossless"])
def test_an_opaque_webp_is_decoded_once(
    tmp_path: pathlib.Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, quality: int
) -> None:
    """A WebP whose header says it has no alpha is decoded once, to the same pixels."""

    path = tmp_path / "opaque.webp"
    assert cv2.imwrite(str(path), cv2.resize(photo, (120, 80)), [cv2.IMWRITE_WEBP_QUALITY, quality])
    expected = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    flags = _counting_decodes(monkeypatch)
    assert np.array_equal(assets.load_image(path), expected)
    assert flags == [cv2.IMREAD_COLOR]


@pytest.mark.parametrize(
    ("ext", "channels", "quality", "transparent"),
    [
        (".jpg", 3, 90, False),
        (".png", 3, 0, False),
        (".png", 4, 0, True),
        (".webp", 3, 90, False),  # simple lossy (VP8)
        (".webp", 3, 101, False),  # lossless without alpha (VP8L)
        (".webp", 4, 101, True),  # lossless with alpha
        (".webp", 4, 80, True),  # lossy with alpha (VP8X)
    ],
)
def test_whether_a_picture_may_be_transparent_is_read_from_its_header(
    ext: str, channels: int, quality: int, transparent: bool
) -> None:
    from service.engine import assets

    picture = np.zeros((8, 8, channels), np.uint8)
    ok, encoded = cv2.imencode(ext, picture, [cv2.IMWRITE_WEBP_QUALITY, quality] if ext == ".webp" else [])
    assert ok
    assert assets.may_be_transparent(encoded.tobytes()) is transparent


def test_a_palette_pngs_transparent_colour_shows_mid_grey(tmp_path: pathlib.Path) -> None:
    """Transparency given by a palette's tRNS chunk, not an alpha channel, is found."""
    from PIL import Image

    indices = np.zeros((40, 60), np.uint8)
    indices[:, 30:] = 1
    picture = Image.fromarray(indices, "P")
    picture.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    path = tmp_path / "palette.png"
    picture.save(path, transparency=0)  # index 0 (red) transparent
    shown = assets.load_image(path)
    assert (shown[:, :30] == 128).all() and (shown[:, 30:] == (255, 0, 0)).all()


@pytest.mark.parametrize("bits", [8, 16, 4])
def test_a_grey_pngs_transparent_grey_level_shows_mid_grey(tmp_path: pathlib.Path, bits: int) -> None:
    """A grey PNG's tRNS chunk names one grey level transparent; OpenCV decodes such a
    picture as one grey channel without it, and its transparent pixels used to keep
    their stored grey."""
    from PIL import Image

    top = (1 << bits) - 1
    levels = np.zeros((40, 60), np.uint16 if bits == 16 else np.uint8)
    levels[:, :30] = top * 200 // 255  # the transparent level
    levels[:, 30:] = top * 60 // 255
    path = tmp_path / "grey.png"
    if bits == 4:  # Pillow writes 1/2/4-bit grey only through a palette: written by hand
        rows = b"".join(
            b"\x00" + bytes((a << 4) | b for a, b in zip(r[::2], r[1::2], strict=True))
            for r in levels.tolist()
        )

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        path.write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", 60, 40, 4, 0, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">H", int(levels[0, 0])))
            + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b"")
        )
    else:
        Image.fromarray(levels).save(path, transparency=int(levels[0, 0]))
    shown = assets.load_image(path)
    assert shown.shape == (40, 60, 3)
    assert (shown[:, :30] == 128).all()
    assert np.abs(shown[:, 30:].astype(int) - round(int(levels[0, 30]) * 255 / top)).max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_transparent_picture_is_shown_over_mid_grey(
    tmp_path: pathlib.Path, photo: np.ndarray, suffix: str
) -> None:
    """And the dashboard's thumbnail shows it so too: read as OpenCV reads a picture by
    default, a cut-out showed the colour stored under its transparent pixels."""
    from service.web import thumbs

    picture = cv2.cvtColor(cv2.resize(photo, (200, 200)), cv2.COLOR_BGR2BGRA)
    picture[:, :100, 3] = 0  # the left half transparent (its colour left as it was)
    picture[:, 100:150, 3] = 128
    path = tmp_path / f"cut-out{suffix}"
    assert cv2.imwrite(str(path), picture, [cv2.IMWRITE_WEBP_QUALITY, 101])
    shown = assets.load_image(path)
    assert shown.shape == (200, 200, 3)
    assert np.array_equal(shown[:, :100], np.full((200, 100, 3), 128, np.uint8))
    half = (picture[:, 100:150, :3].astype(int) + 128) / 2
    assert np.abs(shown[:, 100:150] - half).max() <= 1.5
    assert np.array_equal(shown[:, 150:], picture[:, 150:, :3])
    thumbnail = thumbs._first_frame(path)
    assert thumbnail is not None and np.array_equal(thumbnail, shown)


def test_probe_refuses_decompression_bomb_without_decoding(tmp_path: pathlib.Path) -> None:
    # A valid PNG header claiming 50,000 x 50,000 pixels (2.5 gigapixels).
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(engine.EngineError) as err:
        engine.probe(path)
    assert err.value.failure_code == "ASSET.INVALID"
    assert "megapixels" in err.value.message


def test_probe_describes_reference_video(reference: pathlib.Path) -> None:
    info = engine.probe(reference)
    assert (info.kind, info.format, info.codec) == ("video", "mp4", "h264")
    assert (info.width, info.height) == (256, 256)
    assert info.duration_s == pytest.approx(3.5, abs=0.1)
    assert info.fps == pytest.approx(30)
    assert info.has_audio


@pytest.mark.parametrize(
    ("codec", "fmt", "pix_fmt", "expected_codec", "expected_fmt"),
    [
        ("libvpx-vp9", "webm", "yuv420p", "vp9", "webm"),
        ("libvpx", "webm", "yuv420p", "vp8", "webm"),
        ("libx265", "mp4", "yuv420p", "h265", "mp4"),
        ("prores_ks", "mov", "yuv422p10le", "prores", "mov"),
    ],
)
def test_probe_accepts_each_supported_codec(
    tmp_path: pathlib.Path,
    reference: pathlib.Path,
    codec: str,
    fmt: str,
    pix_fmt: str,
    expected_codec: str,
    expected_fmt: str,
) -> None:
    path = clips.cut(
        reference,
        tmp_path / f"clip.{fmt}",
        0.0,
        0.5,
        size=(64, 64),
        codec=codec,
        fmt=fmt,
        audio=fmt == "webm",
        pix_fmt=pix_fmt,
    )
    info = engine.probe(path)
    assert info.codec == expected_codec
    assert info.format == expected_fmt
    assert info.duration_s is not None and 0.3 < info.duration_s < 0.8  # webm: from the container


@pytest.mark.parametrize(
    ("fmt", "live"),
    [("mp4", False), ("webm", False), ("webm", True)],
    ids=["mp4", "webm", "webm-as-a-browser-records-it"],
)
def test_a_videos_length_is_its_pictures_not_a_longer_audio_tracks(
    tmp_path: pathlib.Path, media: pathlib.Path, fmt: str, live: bool
) -> None:
    path = clips.recorded(
        media / "driving_expressive.mp4", tmp_path / f"clip.{fmt}", 3.2, audio_seconds=6.0, fmt=fmt, live=live
    )
    with av.open(str(path)) as container:  # the file is as described
        header = container.duration
    assert header is None if live else header / 1e6 == pytest.approx(6.0, abs=0.05)
    info = engine.probe(path)
    assert info.duration_s == pytest.approx(77 / 24, abs=0.01)
    assert info.has_audio
    assert video.stream_seconds(path) == info.duration_s  # the same length, read alone


def test_probe_refuses_unsupported_video_codec(tmp_path: pathlib.Path, reference: pathlib.Path) -> None:
    path = clips.cut(reference, tmp_path / "clip.mp4", 0.0, 0.5, size=(64, 64), codec="mpeg4", audio=False)
    with pytest.raises(engine.EngineError, match="codec 'mpeg4' is not supported"):
        engine.probe(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, this is a text file pretending to be a video\n" * 20,
        bytes(range(256)) * 64,
        b"\xff\xd8\xff\xe0" + b"\x00" * 10,  # JPEG magic, truncated header
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 4,  # PNG magic, truncated header
        b"RIFF\x00\x00\x00\x00WEBPVP8X",  # WebP magic, truncated
    ],
)
def test_probe_turns_garbage_into_asset_invalid(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    with pytest.raises(engine.EngineError) as err:
        engine.probe(path)
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message


#: A 1x1 GIF (OpenCV writes BMP and TIFF, not GIF).
_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


@pytest.mark.parametrize(("ext", "name"), [(".gif", "GIF"), (".bmp", "BMP"), (".tiff", "TIFF")])
def test_probe_names_an_image_format_it_does_not_take(
    tmp_path: pathlib.Path, photo: np.ndarray, ext: str, name: str
) -> None:
    """A picture in a format Runway does not take is refused as that picture, not as a
    video in the wrong container."""
    path = tmp_path / f"photo{ext}"
    if ext == ".gif":
        path.write_bytes(_GIF)
    else:
        assert cv2.imwrite(str(path), cv2.resize(photo, (64, 64)))
    with pytest.raises(engine.EngineError, match=f"^{name} images are not supported; use JPEG, PNG or WebP"):
        engine.probe(path)


@pytest.mark.parametrize(("brand", "name"), [(b"heic", "HEIC"), (b"mif1", "HEIF"), (b"avif", "AVIF")])
def test_probe_names_a_phones_still_image_rather_than_opening_it_as_a_video(
    tmp_path: pathlib.Path, brand: bytes, name: str
) -> None:
    """HEIC (a phone camera's photo) and AVIF share MP4's box structure: their ``ftyp``
    brand tells them apart before FFmpeg opens them as a container."""
    path = tmp_path / "IMG_0001.heic"
    path.write_bytes(struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 200)
    with pytest.raises(engine.EngineError, match=f"^{name} images are not supported"):
        engine.probe(path)


def test_probe_refuses_truncated_video(tmp_path: pathlib.Path, reference: pathlib.Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(reference.read_bytes()[:4000])
    with pytest.raises(engine.EngineError) as err:
        engine.probe(path)
    assert err.value.failure_code == "ASSET.INVALID"


def test_probe_refuses_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(engine.EngineError) as err:
        engine.probe(tmp_path / "nope.mp4")
    assert err.value.failure_code == "ASSET.INVALID"
