"""Streams whose shape is not the plain one: a resolution that changes mid-stream (a
browser's WebRTC recording), a clock that does not start at 0 (a Matroska remux with an
offset), pixels that are not square (anamorphic video). Each is decoded, sized and
measured as a player shows it."""

from __future__ import annotations

import fractions
import pathlib
import types
from collections.abc import Iterable

import av
import cv2
import numpy as np
import pytest

from service import engine
from service.engine import video

from . import clips

FPS = 24


def _webm(dst: pathlib.Path, pictures: Iterable[np.ndarray], size: tuple[int, int]) -> pathlib.Path:
    """A lossless VP9 WebM of BGR ``pictures`` (``size`` = width, height)."""
    options = {"deadline": "realtime", "cpu-used": "8", "lossless": "1"}
    return clips.encode(dst, pictures, size, FPS, options, codec="libvpx-vp9", fmt="webm")


def _joined(dst: pathlib.Path, parts: list[pathlib.Path]) -> pathlib.Path:
    """The video streams of ``parts`` one after the other in one WebM track, copied (as
    ``ffmpeg -f concat -c copy`` joins them, and as a recorder writes a stream whose
    resolution changes)."""
    with av.open(str(dst), "w", format="webm") as out:
        with av.open(str(parts[0])) as first:
            stream = out.add_stream_from_template(first.streams.video[0])
        offset = 0.0
        for part in parts:
            with av.open(str(part)) as inp:
                end = offset
                for packet in inp.demux(video=0):
                    if packet.dts is None:
                        continue
                    _later(packet, offset)
                    end = max(end, float(((packet.pts or 0) + (packet.duration or 0)) * packet.time_base))
                    packet.stream = stream
                    out.mux(packet)
                offset = end
    return dst


def _later(packet: av.Packet, seconds: float) -> None:
    """Move a demuxed ``packet`` ``seconds`` later on its stream's clock."""
    ticks = round(seconds / packet.time_base)
    if packet.pts is not None:
        packet.pts += ticks
    if packet.dts is not None:
        packet.dts += ticks


def _square(size: tuple[int, int], side: int) -> np.ndarray:
    """A white square ``side`` px wide centred on a mid-grey picture of ``size``."""
    width, height = size
    picture = np.full((height, width, 3), 100, np.uint8)
    x, y = (width - side) // 2, (height - side) // 2
    picture[y : y + side, x : x + side] = 255
    return picture


def _box(picture: np.ndarray, level: int = 180) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels brighter than ``level`` (right, bottom
    past the last)."""
    ys, xs = np.nonzero(picture.mean(axis=2) > level)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(
    ("later", "side", "square", "bands"),
    [((48, 48), 24, (16, 16, 48, 48), 0), ((96, 54), 27, (23, 23, 41, 41), 14)],
    ids=["same-shape-smaller", "wider-shape"],
)
def test_a_stream_whose_resolution_changes_keeps_its_first_frames_size(
    tmp_path: pathlib.Path,
    later: tuple[int, int],
    side: int,
    square: tuple[int, int, int, int],
    bands: int,
) -> None:
    """A browser's recording changes resolution mid-stream; every frame comes at the
    first's size (64x64 here), a later one scaled, not cropped: the same shape fills it
    (a 32 px square centred again), another fits inside it with black bands (96x54 at
    64x36, its 27 px square 18 px), as a player shows it in the window it opened."""
    first = _webm(tmp_path / "a.webm", [_square((64, 64), 32)] * FPS, (64, 64))
    second = _webm(tmp_path / "b.webm", [_square(later, side)] * FPS, later)
    clip = _joined(tmp_path / "changing.webm", [first, second])
    with av.open(str(clip)) as container:  # the file is as described
        sizes = {(f.width, f.height) for f in container.decode(video=0)}
    assert sizes == {(64, 64), later}
    frames = list(video.iter_frames(clip, FPS, 2 * FPS, hold=False))
    assert len(frames) == 2 * FPS
    assert {f.shape for f in frames} == {(64, 64, 3)}
    assert _box(frames[FPS // 2]) == (16, 16, 48, 48)
    grey = frames[0][:8].mean()  # the background, as coded
    for frame in frames[FPS + 2 :]:
        left, top, right, bottom = _box(frame)
        assert max(abs(a - b) for a, b in zip((left, top, right, bottom), square, strict=True)) <= 1
        assert abs((right - left) - (bottom - top)) <= 1  # square still, not stretched
        if bands:
            assert frame[: bands - 1].max() < 10 and frame[-bands + 1 :].max() < 10  # black bands
            assert abs(frame[bands + 2 : -bands - 2, :8].mean() - grey) <= 3  # the picture's grey
        else:
            assert abs(frame[:8].mean() - grey) <= 3
    # Reduced as asked, the later frames too.
    assert {f.shape for f in video.iter_frames(clip, FPS, 2 * FPS, longest=32)} == {(32, 32, 3)}


def test_a_later_frame_fits_the_first_ones_size_as_a_player_shows_it() -> None:
    assert video.fitted_size(960, 540, None, (1280, 720)) == (1280, 720)
    assert video.fitted_size(426, 240, None, (1280, 720)) == (1280, 720)  # 16:9 rounded: fills it
    assert video.fitted_size(720, 1280, None, (1280, 720)) == (405, 720)  # turned: fits inside
    assert video.fitted_size(96, 54, None, (64, 64)) == (64, 36)
    assert video.fitted_size(96, 72, fractions.Fraction(4, 3), (64, 36)) == (64, 36)  # shown 128x72


def _offset(src: pathlib.Path, dst: pathlib.Path, seconds: float) -> pathlib.Path:
    """``src``'s streams copied into ``dst`` (Matroska or WebM, by its suffix) with every
    time ``seconds`` later, as ``ffmpeg -c copy -output_ts_offset`` writes it."""
    fmt = "webm" if dst.suffix == ".webm" else "matroska"
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        streams = {
            s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")
        }
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is None:
                continue
            _later(packet, seconds)
            packet.stream = streams[packet.stream_index]
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def plain(media: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """The same 3.5 s of the performer (64x64, 30 fps, with sound) as an H.264 MP4 and a
    VP9 WebM, both starting at 0."""
    folder = tmp_path_factory.mktemp("offsets")
    src = media / "driving_expressive.mp4"
    return {
        "mp4": clips.cut(src, folder / "plain.mp4", 0.0, 3.5, size=(64, 64)),
        "webm": clips.cut(
            src, folder / "plain.webm", 0.0, 3.5, size=(64, 64), codec="libvpx-vp9", fmt="webm"
        ),
    }


@pytest.mark.parametrize("fmt", ["mkv", "webm"])
@pytest.mark.parametrize("seconds", [0.0, 1.0, 10.0])
def test_a_videos_length_is_its_pictures_span_whatever_its_clock_starts_at(
    plain: dict[str, pathlib.Path], tmp_path: pathlib.Path, fmt: str, seconds: float
) -> None:
    """FFmpeg's Matroska muxer writes a track's end time in its DURATION tag: a 3.5 s
    clip offset by 10 s was taken as 13.5 s long (rendered frozen past 3.5 s; a 28 s one
    offset by 5 refused as too long). Its length is its frames' span, as the MP4's."""
    mp4 = engine.probe(plain["mp4"]).duration_s
    assert mp4 == pytest.approx(3.5, abs=0.01)
    source = plain["webm" if fmt == "webm" else "mp4"]
    clip = _offset(source, tmp_path / f"offset.{fmt}", seconds)
    with av.open(str(clip)) as container:  # the file is as described (Opus starts 0.021 s early)
        stream = container.streams.video[0]
        assert stream.start_time is not None and stream.time_base is not None
        assert float(stream.start_time * stream.time_base) == pytest.approx(seconds, abs=0.03)
    info = engine.probe(clip)
    assert info.duration_s == pytest.approx(mp4, abs=1 / 30)
    assert video.stream_seconds(clip) == info.duration_s
    frames = list(video.iter_frames(clip, FPS, 200, hold=False))
    assert len(frames) == len(list(video.iter_frames(source, FPS, 200, hold=False)))


def test_a_plain_remux_whose_picture_starts_after_its_sound_is_not_a_frame_too_long(
    plain: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """``ffmpeg -c copy`` to Matroska starts the picture 0.023 s after the sound (AAC's
    priming); the DURATION tag, its end, made it a frame longer than its frames."""
    src = plain["mp4"]
    clip = tmp_path / "late.mkv"
    with av.open(str(src)) as inp, av.open(str(clip), "w", format="matroska") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == "video":
                _later(packet, 0.023)
            packet.stream = streams[packet.stream_index]
            out.mux(packet)
    with av.open(str(clip)) as container:  # the tag says where the picture ends
        tag = str(container.streams.video[0].metadata["DURATION"])
        assert tag.startswith("00:00:03.") and float(tag[6:]) > 3.52
    assert engine.probe(clip).duration_s == pytest.approx(3.5, abs=0.002)


def test_a_character_video_with_an_offset_plays_its_frames(
    short_character_video: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Played back on its own (``hold=False``), a character video offset by 5 s shows
    the frames it shows remuxed without the offset, as many as its MP4 (Matroska's
    millisecond clock may show a frame a millisecond later than the MP4 does)."""
    own = list(video.iter_frames(short_character_video, FPS, 100, hold=False))
    assert len(own) == 36  # 1.5 s at 24 fps
    zero = list(
        video.iter_frames(_offset(short_character_video, tmp_path / "zero.mkv", 0.0), FPS, 100, hold=False)
    )
    clip = _offset(short_character_video, tmp_path / "offset.mkv", 5.0)
    moved = list(video.iter_frames(clip, FPS, 100, hold=False))
    assert len(moved) == len(zero) == len(own)
    for a, b in zip(moved, zero, strict=True):
        np.testing.assert_array_equal(a, b)
    assert video.stream_seconds(clip) == pytest.approx(1.5, abs=0.01)


def _anamorphic(
    dst: pathlib.Path, shown: np.ndarray, stored: tuple[int, int], aspect: fractions.Fraction
) -> pathlib.Path:
    """An H.264 MP4 of the BGR picture ``shown`` (its display-space picture) stored
    squeezed to ``stored`` (width, height) in pixels of ``aspect``."""
    picture = cv2.resize(shown, stored, interpolation=cv2.INTER_AREA).astype(np.uint8)
    with av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = stored[0], stored[1], "yuv420p"
        stream.codec_context.sample_aspect_ratio = aspect
        stream.options = {"preset": "ultrafast", "crf": "10"}
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def _circle(size: tuple[int, int], radius: int) -> np.ndarray:
    picture = np.full((size[1], size[0], 3), 60, np.uint8)
    cv2.circle(picture, (size[0] // 2, size[1] // 2), radius, (255, 255, 255), -1, cv2.LINE_AA)
    return picture


@pytest.mark.parametrize(
    ("stored", "aspect", "shown"),
    [((96, 72), fractions.Fraction(4, 3), (128, 72)), ((128, 64), fractions.Fraction(1, 2), (128, 128))],
    ids=["wide-pixels", "tall-pixels"],
)
def test_non_square_pixels_are_shown_at_their_display_size(
    tmp_path: pathlib.Path, stored: tuple[int, int], aspect: fractions.Fraction, shown: tuple[int, int]
) -> None:
    """Anamorphic video (stored 960x720, shown 1280x720) came out squeezed; each frame
    is widened (or, for tall pixels, heightened) as players show it, so a circle drawn
    in display space is round, and probe says the size the frames come at."""
    clip = _anamorphic(tmp_path / "sar.mp4", _circle(shown, 28), stored, aspect)
    info = engine.probe(clip)
    assert (info.width, info.height) == shown
    frame = next(video.iter_frames(clip, FPS, 1))
    assert frame.shape == (shown[1], shown[0], 3)
    left, top, right, bottom = _box(frame, 150)
    assert abs((right - left) - (bottom - top)) <= 2  # round (squeezed: 42 wide, 56 high)
    assert abs((left + right) / 2 - shown[0] / 2) <= 1 and abs((top + bottom) / 2 - shown[1] / 2) <= 1
    # Reduced and covering sizes are taken from the display size.
    reduced = video.reduced_size(*shown, 64)
    assert (
        reduced is not None and next(video.iter_frames(clip, FPS, 1, longest=64)).shape[:2] == reduced[::-1]
    )
    covered = next(video.iter_frames(clip, FPS, 1, cover=(shown[0] // 2, shown[1] // 2)))
    assert covered.shape == (shown[1] // 2, shown[0] // 2, 3)


def test_a_videos_thumbnail_shows_its_pixels_at_their_display_size(tmp_path: pathlib.Path) -> None:
    """The dashboard's thumbnail of an anamorphic upload is as wide as a player shows it."""
    from service.web import thumbs

    clip = _anamorphic(tmp_path / "sar.mp4", _circle((128, 72), 28), (96, 72), fractions.Fraction(4, 3))
    jpeg = thumbs.make(clip, width=128)
    assert jpeg is not None
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (72, 128)


def test_display_sizes_enlarge_the_side_the_pixels_stretch() -> None:
    assert video.display_size(960, 720, fractions.Fraction(4, 3)) == (1280, 720)
    assert video.display_size(720, 480, fractions.Fraction(8, 9)) == (720, 540)
    assert video.display_size(1280, 720, None) == (1280, 720)


def test_pixels_all_but_square_are_taken_as_square() -> None:
    """FFmpeg's scaler tags a picture resized to not quite its shape with an aspect a
    hair off square (721x1279 from 720x1280: 11511:11536); shown so, it would stretch
    by 3 px and cost a scaling pass on every frame."""

    def aspect(ratio: fractions.Fraction | None) -> fractions.Fraction | None:
        return video.pixel_aspect(types.SimpleNamespace(sample_aspect_ratio=ratio))

    assert aspect(fractions.Fraction(11511, 11536)) is None
    assert (
        aspect(None) is None
        and aspect(fractions.Fraction(0)) is None
        and aspect(fractions.Fraction(1)) is None
    )
    assert aspect(fractions.Fraction(4, 3)) == fractions.Fraction(4, 3)
    assert aspect(fractions.Fraction(8, 9)) == fractions.Fraction(8, 9)


def test_a_reference_cut_short_by_damage_is_refused_not_frozen(
    tmp_path: pathlib.Path, reference: pathlib.Path
) -> None:
    """A faststart MP4 cut in half keeps its index, which still claims the whole clip:
    its last good frame used to be held for the rest (two-thirds of a render frozen).
    A stream that merely ends a little early, or a damaged last frame, is still held."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(reference)) as src, av.open(str(whole), "w", options={"movflags": "+faststart"}) as dst:
        picture = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = picture
                dst.mux(packet)
    data = whole.read_bytes()
    assert data[:64].find(b"moov") > 0  # the index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    count = round(3.5 * FPS)
    with pytest.raises(engine.EngineError) as err:
        list(video.iter_frames(cut, FPS, count))
    assert err.value.failure_code == "ASSET.INVALID"
    assert err.value.message.startswith("The video is damaged or cut short: its pictures stop at ")
    assert err.value.message.endswith(" of the 3.5 s it claims.")
    assert (
        len(list(video.iter_frames(cut, FPS, count, hold=False))) < count
    )  # (a character plays what decoded)
    nearly = tmp_path / "nearly.mp4"
    nearly.write_bytes(data[: len(data) - 2000])  # the last packet or two damaged
    assert len(list(video.iter_frames(nearly, FPS, count))) == count


def _cut_out(size: tuple[int, int]) -> np.ndarray:
    """A BGRA picture: an opaque orange square on pixels fully transparent, whose stored
    colour is a keyer's green."""
    picture = np.zeros((size[1], size[0], 4), np.uint8)
    picture[...] = (0, 255, 0, 0)
    picture[16:48, 24:72] = (0, 128, 255, 255)
    return picture


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options"),
    [
        ("prores.mov", "prores_ks", "yuva444p10le", {"profile": "4444"}),
        ("alpha.webm", "libvpx-vp9", "yuva420p", {"deadline": "realtime", "cpu-used": "8", "lossless": "1"}),
    ],
)
def test_a_video_with_an_alpha_channel_is_shown_over_mid_grey(
    tmp_path: pathlib.Path, name: str, codec: str, pix_fmt: str, options: dict[str, str]
) -> None:
    """A character cut out of its background is exported as ProRes 4444 (MOV) or as VP9
    with alpha (WebM, whose alpha FFmpeg's own VP9 decoder drops). Its transparent
    pixels show mid-grey, as a picture's do, not the colour stored under them; its
    opaque ones keep theirs; the dashboard's thumbnail shows the same."""
    from service.web import thumbs

    size, fmt = (96, 64), name.split(".")[1]
    pictures = [_cut_out(size)] * 6
    clip = clips.encode(tmp_path / name, pictures, size, FPS, options, codec=codec, fmt=fmt, pix_fmt=pix_fmt)
    frames = list(video.iter_frames(clip, FPS, 6))
    assert len(frames) == 6
    for frame in frames:
        assert frame.shape == (64, 96, 3)
        assert np.abs(frame[4, 4].astype(int) - video.MID_GREY).max() <= 3  # was (0, 255, 0)
        assert np.abs(frame[32, 48].astype(int) - (0, 128, 255)).max() <= 6
    np.testing.assert_array_equal(thumbs._first_frame(clip), frames[0])
