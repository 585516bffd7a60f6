"""``callboard render``: exit codes and one-line errors."""

from __future__ import annotations

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
    assert "100%" in captured.err


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
