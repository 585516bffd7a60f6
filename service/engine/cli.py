"""``callboard render``: run the offline engine on local files.

    callboard render --character FILE --reference FILE --out FILE [--ratio R]
                     [--expression-intensity N] [--body-control/--no-body-control] [--seed N]

The character's kind (image or video) is found by probing it. A progress bar goes to
stderr (a line every 10 % when stderr is not a terminal); on success the output path
and the real-time factor (render seconds per clip second) go to stdout and the exit
code is 0. Bad input (including any ``EngineError``) prints one line to stderr and
exits with 2.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from service.engine import contracts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callboard render", description="Render a character performance offline (no network, CPU only)."
    )
    parser.add_argument(
        "--character",
        required=True,
        type=pathlib.Path,
        help="character image (JPEG/PNG/WebP) or video (MP4/MOV/WebM)",
    )
    parser.add_argument(
        "--reference", required=True, type=pathlib.Path, help="driving performance video, 3-30 s"
    )
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output MP4 path")
    parser.add_argument(
        "--ratio", default="1280:720", choices=list(contracts.RATIOS), help="output size (default 1280:720)"
    )
    parser.add_argument(
        "--expression-intensity",
        type=int,
        default=3,
        choices=range(1, 6),
        metavar="{1..5}",
        help="expression transfer strength, 3 = faithful",
    )
    parser.add_argument(
        "--body-control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="shoulders follow the performer (default on)",
    )
    parser.add_argument("--seed", type=int, default=0, help="0..4294967295 (camera motion)")
    return parser


class _Bar:
    """Progress on stderr. On a terminal, a one-line bar redrawn only when the shown
    percent changes; elsewhere (a log file, a CI job, a pipe), a plain line every
    ``LOG_STEP`` percent, so a log holds a dozen lines rather than a hundred redraws."""

    LOG_STEP = 10

    def __init__(self) -> None:
        self._shown = -1
        self._live = sys.stderr.isatty()

    def __call__(self, fraction: float) -> None:
        percent = int(fraction * 100)
        if not self._live:
            percent -= percent % self.LOG_STEP
        if percent == self._shown:
            return
        self._shown = percent
        if self._live:
            filled = percent * 30 // 100
            sys.stderr.write(f"\rrendering [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%")
        else:
            sys.stderr.write(f"rendering {percent:3d}%\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self._shown >= 0 and self._live:
            sys.stderr.write("\n")


def _output_problem(out: pathlib.Path, inputs: list[pathlib.Path]) -> str | None:
    """Why the render could not be written to ``out`` (None: it can), found before any
    work is done: the engine itself finds out only when it starts writing, after loading
    its models and preparing the character, and reports an internal failure."""
    parent = out.parent
    if not parent.is_dir():
        return f"--out {out}: the directory {parent} does not exist"
    try:
        longest = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(out.name)) > longest:  # (looking it up would fail too)
        return f"--out {out}: the file name is longer than the file system allows ({longest} bytes)"
    if out.is_dir():
        return f"--out {out} is a directory; give the file to write, such as {out / 'out.mp4'}"
    if out.exists() and any(path.exists() and os.path.samefile(out, path) for path in inputs):
        return f"--out {out} is one of the inputs; it would be overwritten"
    # The render is written next to its destination, under the name it will use, then
    # moved into place.
    tmp = contracts.partial_path(out, os.getpid())
    try:
        with tmp.open("xb"):
            pass
    except FileExistsError:
        pass
    except OSError as exc:
        return f"--out {out}: cannot write in {parent} ({exc.strerror or exc})"
    else:
        tmp.unlink(missing_ok=True)
    return None


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage line
        return int(exc.code or 0) and 2
    if not 0 <= args.seed <= 0xFFFFFFFF:
        print("error: --seed must be between 0 and 4294967295", file=sys.stderr)
        return 2
    problem = _output_problem(args.out, [args.character, args.reference])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from service.engine import assets, pipeline

    bar = _Bar()
    started = time.monotonic()
    try:
        info = assets.probe(args.character)
        request = contracts.RenderRequest(
            character_path=args.character,
            character_type=info.kind,
            reference_path=args.reference,
            output_path=args.out,
            ratio=args.ratio,
            expression_intensity=args.expression_intensity,
            body_control=args.body_control,
            seed=args.seed,
        )
        bar(0.0)
        pipeline.preload()  # the libraries and models (a few seconds), under the bar
        result = pipeline.render(request, progress=bar)
    except contracts.EngineError as exc:
        bar.done()
        print(f"error: {exc.message} ({exc.failure_code})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.done()
        print("error: interrupted", file=sys.stderr)
        return 130
    bar.done()
    elapsed = time.monotonic() - started
    print(
        f"{args.out}  {result.width}x{result.height} {result.frames} frames "
        f"{result.duration_s:.2f} s  RTF {elapsed / result.duration_s:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
