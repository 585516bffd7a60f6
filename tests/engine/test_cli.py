"""``callboard render``: exit codes and one-line errors."""

from __future__ import annotations

import io
import pathlib

import pytest

from service.engine import cli


def test_cli_renders_and_prints_path_and_rtf(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.mp4"
    code = cli.main(
        [
            "--character",
            str(media / "character_cartoon.jpg"),
            "--reference",
            str(reference),
            "--out",
            str(out),
            "--ratio",
            "960:960",
            "--no-body-control",
            "--seed",
            "3",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert out.exists()
    assert str(out) in captured.out and "RTF" in captured.out
    # Not a terminal: a plain line every 10 %, no carriage-return redraws.
    assert "\r" not in captured.err
    assert captured.err.splitlines() == [f"rendering {p:3d}%" for p in range(0, 101, 10)]


def test_cli_draws_one_redrawn_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    written = io.StringIO()
    monkeypatch.setattr(written, "isatty", lambda: True)
    monkeypatch.setattr(cli.sys, "stderr", written)
    bar = cli._Bar()
    for fraction in (0.0, 0.004, 0.013, 0.5, 1.0):
        bar(fraction)
    bar.done()
    assert (
        written.getvalue()
        == "".join(
            f"\rrendering [{'#' * (p * 30 // 100)}{'.' * (30 - p * 30 // 100)}] {p:3d}%"
            for p in (0, 1, 50, 100)
        )
        + "\n"
    )


def test_cli_reports_bad_input_in_one_line_with_exit_2(
    tmp_path: pathlib.Path, reference: pathlib.Path, media: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "--character",
            str(media / "character_dog.jpg"),
            "--reference",
            str(reference),
            "--out",
            str(tmp_path / "o.mp4"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == "error: No human-like face was found in the character image. (ASSET.INVALID)"


def test_cli_rejects_unknown_ratio_with_exit_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--character", "a.jpg", "--reference", "b.mp4", "--out", "c.mp4", "--ratio", "4:3"])
    assert code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "where", ["missing_dir", "a_directory", "read_only_dir", "an_input", "too_long_a_name"]
)
def test_cli_refuses_an_output_it_cannot_write_before_rendering(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    from service.engine import pipeline

    character, reference = tmp_path / "c.jpg", tmp_path / "r.mp4"
    character.write_bytes(b"x")
    reference.write_bytes(b"x")
    expected = {
        "missing_dir": (tmp_path / "nowhere" / "o.mp4", "the directory"),
        "a_directory": (tmp_path, "is a directory"),
        "read_only_dir": (tmp_path / "locked" / "o.mp4", "cannot write in"),
        "an_input": (reference, "is one of the inputs"),
        "too_long_a_name": (tmp_path / ("n" * 252 + ".mp4"), "longer than the file system allows"),
    }
    out, words = expected[where]
    if where == "read_only_dir":
        out.parent.mkdir()
        opened = pathlib.Path.open

        def refuse(path: pathlib.Path, *args: object, **kwargs: object) -> object:
            if path.parent == out.parent:
                raise PermissionError(13, "Permission denied")
            return opened(path, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(pathlib.Path, "open", refuse)  # (root may write anywhere)
    monkeypatch.setattr(pipeline, "render", lambda *_, **__: pytest.fail("rendered"))
    code = cli.main(["--character", str(character), "--reference", str(reference), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: --out {out}") and words in err[0]
    assert reference.read_bytes() == b"x"


def test_a_long_legal_output_name_is_checked_and_written_under_a_name_that_fits(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 250-byte name is legal, but ``.<name>.<pid>.partial`` is not: the temporary name
    keeps only the start of it. The CLI's check creates that very file (and removes it)."""
    from service.engine import contracts, pipeline

    out = tmp_path / ("é" * 123 + ".mp4")  # 250 bytes in UTF-8
    tmp = contracts.partial_path(out, 4194304)
    assert len(tmp.name.encode()) <= 255 and tmp.parent == tmp_path and tmp.name.startswith(".éé")
    tmp.write_bytes(b"")  # the file system takes it
    tmp.unlink()
    character, reference = tmp_path / "c.jpg", tmp_path / "r.mp4"
    character.write_bytes(b"x")
    reference.write_bytes(b"x")
    monkeypatch.setattr(pipeline, "render", lambda *_, **__: pytest.fail("rendered"))
    code = cli.main(["--character", str(character), "--reference", str(reference), "--out", str(out)])
    assert code == 2  # the picture is not one; the output was found writable
    assert "--out" not in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jpg", "r.mp4"]


@pytest.mark.parametrize("which", ["character", "reference"])
def test_cli_names_the_input_at_fault(
    tmp_path: pathlib.Path,
    media: pathlib.Path,
    reference: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
) -> None:
    """A missing file, or a picture given as the performance, is named by its flag (both
    used to read "The file could not be read", and a GIF reference was told to use JPEG)."""
    missing = tmp_path / "missing.mp4"
    gif = tmp_path / "performance.gif"
    gif.write_bytes(b"GIF89a" + bytes(64))
    character = missing if which == "character" else media / "character_photo.jpg"
    performance = gif if which == "reference" else reference
    code = cli.main(
        ["--character", str(character), "--reference", str(performance), "--out", str(tmp_path / "o.mp4")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    if which == "character":
        assert err[0].startswith(f"error: --character {missing}: The file could not be read")
    else:
        assert err[0] == (
            f"error: --reference {gif}: The reference must be a video (MP4, MOV or WebM) of a performer; "
            "this file is a GIF picture. (ASSET.INVALID)"
        )


@pytest.mark.parametrize(
    ("out", "words"), [("o.webm", "the render is an MP4"), ("new/", "names a directory")]
)
def test_cli_refuses_an_output_name_it_would_not_honour(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], out: str, words: str
) -> None:
    """A WebM name used to get MP4 bytes, and ``new/`` a file called ``new``."""
    code = cli.main(["--character", "c.jpg", "--reference", "r.mp4", "--out", str(tmp_path) + "/" + out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0]
    assert list(tmp_path.iterdir()) == []


def test_sigterm_stops_the_render_and_leaves_nothing(
    tmp_path: pathlib.Path, media: pathlib.Path, reference: pathlib.Path
) -> None:
    """``kill`` or ``timeout`` (SIGTERM) used to end the process with its temporary file
    left beside the destination; it now stops the render as Ctrl-C does (exit 143)."""
    import signal
    import subprocess
    import sys

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["--character", str(media / "character_photo.jpg"), "--reference", str(reference)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.engine.cli", *args, "--out", str(out_dir / "o.mp4")],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # wait until frames are being written
            if line.startswith("rendering") and int(line.split()[-1].rstrip("%")) >= 30:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == "error: terminated"
    assert list(out_dir.iterdir()) == []


def test_the_libraries_own_log_lines_are_hidden_unless_asked_for(
    tmp_path: pathlib.Path, media: pathlib.Path, reference: pathlib.Path
) -> None:
    """TensorFlow Lite and MediaPipe write a dozen notices to the process's stderr, around
    the bar and before the one error line; they show only with ``--verbose``."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "service.engine.cli", "--character", str(media / "character_dog.jpg")]
    args += ["--reference", str(reference), "--out", str(tmp_path / "o.mp4")]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 2
    assert [line for line in quiet.stderr.splitlines() if not line.startswith("rendering")] == [
        "error: No human-like face was found in the character image. (ASSET.INVALID)"
    ]
    verbose = subprocess.run([*args, "--verbose"], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 2 and "TensorFlow Lite" in verbose.stderr
