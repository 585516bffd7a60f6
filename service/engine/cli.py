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
import contextlib
import os
import pathlib
import signal
import sys
import time
from collections.abc import Iterator

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
    parser.add_argument("--out", required=True, dest="out_given", metavar="OUT", help="output MP4 path")
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
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own log lines (MediaPipe, TensorFlow Lite)",
    )
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


#: Names the render may be written under: it is an MP4 (H.264 + AAC) whatever the name,
#: so a name promising another container (``.webm``, ``.mkv``) is refused, not obeyed.
MP4_SUFFIXES = frozenset({"", ".mp4", ".m4v", ".mov"})


def _output_problem(given: str, inputs: list[pathlib.Path]) -> str | None:
    """Why the render could not be written to ``given`` (``--out`` as typed: a trailing
    slash names a directory, which ``Path`` drops; None: it can), found before any work
    is done: the engine itself finds out only when it starts writing, after loading its
    models and preparing the character, and reports an internal failure."""
    out = pathlib.Path(given)
    if given.endswith(("/", os.sep)) and not out.is_dir():
        return f"--out {given} names a directory that does not exist; give the file to write"
    if out.suffix.lower() not in MP4_SUFFIXES:
        return (
            f"--out {out}: the render is an MP4 (H.264 + AAC); give the file a .mp4 name "
            "(.m4v and .mov also play it)"
        )
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
    args.out = pathlib.Path(args.out_given)
    if not 0 <= args.seed <= 0xFFFFFFFF:
        print("error: --seed must be between 0 and 4294967295", file=sys.stderr)
        return 2
    problem = _output_problem(args.out_given, [args.character, args.reference])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from service.engine import assets, pipeline

    # Each input is checked here first, so that its error names it (and comes before
    # the models load).
    probed = []
    for flag, path, video_only in (
        ("--character", args.character, False),
        ("--reference", args.reference, True),
    ):
        try:
            probed.append(assets.probe(path, video_only=video_only))
        except contracts.EngineError as exc:
            print(f"error: {flag} {path}: {exc.message} ({exc.failure_code})", file=sys.stderr)
            return 2

    bar = _Bar()
    started = time.monotonic()
    try:
        request = contracts.RenderRequest(
            character_path=args.character,
            character_type=probed[0].kind,
            reference_path=args.reference,
            output_path=args.out,
            ratio=args.ratio,
            expression_intensity=args.expression_intensity,
            body_control=args.body_control,
            seed=args.seed,
        )
        bar(0.0)
        with _terminated_as_interrupt(), _libraries_quiet(not args.verbose):
            pipeline.preload()  # the libraries and models (a few seconds), under the bar
            result = pipeline.render(request, progress=bar)
    except contracts.EngineError as exc:
        bar.done()
        print(f"error: {exc.message} ({exc.failure_code})", file=sys.stderr)
        return 2
    except Terminated:
        bar.done()
        print("error: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
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


@contextlib.contextmanager
def _libraries_quiet(quiet: bool) -> Iterator[None]:
    """With ``quiet``, what the native libraries write to the process's stderr (a dozen
    lines of TensorFlow Lite and MediaPipe notices a render, around the bar and before
    an error) goes nowhere, while Python's own stderr (the bar, errors) still shows."""
    if not quiet:
        yield
        return
    try:
        ours = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # not a file (captured): only fd 2 moves
        ours = False
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    if ours:
        sys.stderr = open(saved, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        if ours:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.close(saved)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a supervisor stopping the job), raised in the main
    thread as Ctrl-C is, so the render stops the same way and leaves no partial file
    (left to its default, the signal ended the process with its temporary file behind)."""


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
