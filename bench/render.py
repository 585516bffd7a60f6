"""Speed and memory of the offline engine at 1280x720, next to the decode+encode floor.

    python bench/render.py [--cases photo-12s,photo-30s,video-30s,video-12s] [--work-dir DIR]

For each case, in fresh processes started with multiprocessing's 'spawn' (as the worker
runs renders), it measures in one run:

* floor: decoding the reference at 24 fps, scaling to 1280x720 and encoding it with the
  engine's own encoder settings (x264 + AAC mux) — what any render must at least pay;
* render: the full engine render of the same clip, timed from the job's arrival in a
  process that has loaded the engine (as the worker's warm spare processes do,
  CALLBOARD_LOCAL_PREWARM); loading the engine is printed separately as the cold start;

With ``--repeat N`` the two alternate N times and each keeps its best run (load from
other jobs on a shared machine only ever adds time); the range of render/floor over the
N side-by-side pairs is printed too, to show how far the machine's load moved it. It
prints wall seconds, the real-time factor (seconds per clip second), render/floor, the
CPU seconds each run's threads used (over the cores, they bound how fast the run could
be), and each process's peak memory twice: resident (``ru_maxrss``, which also counts
the shared libraries' pages the process has mapped from the page cache, and so swings by
50-90 MB between identical runs) and private (the process's own heap and anonymous maps,
``RssAnon`` sampled every 20 ms), the steadier figure to compare. The 30 s reference is
made by looping the shared expressive driving clip (re-encoded here). Absolute numbers
drift on shared machines; compare the ratios measured side by side.
Goals: render RTF <= 1.0, render <= 2x floor, peak <= 600 MB for the 30 s job.
"""

from __future__ import annotations

import argparse
import fractions
import multiprocessing
import os
import pathlib
import resource
import sys
import threading
import time
from queue import Empty

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEDIA = pathlib.Path(os.environ.get("CALLBOARD_TEST_MEDIA", REPO.parent / "shared" / "media"))
CASES = {
    "photo-12s": ("character_photo.jpg", "driving_expressive.mp4"),
    "photo-30s": ("character_photo.jpg", "loop30"),
    "video-30s": ("character_video.mp4", "loop30"),
    "video-12s": ("character_video.mp4", "driving_expressive.mp4"),
    "cartoon-portrait-12s": ("character_cartoon.jpg", "driving_talking_portrait.mp4"),
}


def make_loop(src: pathlib.Path, dst: pathlib.Path, seconds: float) -> pathlib.Path:
    """Re-encode ``src`` looped to ``seconds`` (video and audio), H.264 + AAC."""
    import av

    if dst.exists():
        return dst
    with av.open(str(dst), "w", format="mp4") as out:
        vout = None
        aout = None
        n_v = n_a = 0
        offset = 0.0
        while offset < seconds:
            with av.open(str(src)) as inp:
                vin = inp.streams.video[0]
                ain = inp.streams.audio[0] if inp.streams.audio else None
                if vout is None:
                    rate = vin.average_rate or fractions.Fraction(30)
                    vout = out.add_stream("libx264", rate=rate)
                    vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
                    vout.options = {"preset": "veryfast"}
                    if ain is not None:
                        aout = out.add_stream("aac", rate=ain.rate)
                        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=ain.rate)
                length = inp.duration / 1e6
                streams = [vin] + ([ain] if ain is not None else [])
                for packet in inp.demux(*streams):
                    for frame in packet.decode():
                        if frame.time is None or offset + frame.time >= seconds:
                            continue
                        if isinstance(frame, av.VideoFrame):
                            vf = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                            vf.pts = n_v
                            vf.time_base = 1 / vout.average_rate
                            n_v += 1
                            out.mux(vout.encode(vf))
                        elif aout is not None:
                            for af in resampler.resample(frame):
                                af.pts = n_a
                                af.time_base = fractions.Fraction(1, af.sample_rate)
                                n_a += af.samples
                                out.mux(aout.encode(af))
                offset += length
        assert vout is not None
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
    return dst


class _PrivatePeak:
    """Samples the process's private resident memory (``RssAnon``, Linux) on a thread."""

    def __init__(self) -> None:
        self.peak_mb = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> float | None:
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def _run(self) -> None:
        while True:
            value = self._read()
            if value is None:
                return
            if not value <= self.peak_mb:  # also replaces the initial nan
                self.peak_mb = value
            if self._stop.wait(0.02):
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds (user + system) the process's threads have used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _floor_job(reference: str, output: str, result: multiprocessing.Queue) -> None:
    import cv2

    from service import engine
    from service.engine import encoder, video

    private = _PrivatePeak()
    started, cpu = time.monotonic(), _cpu_s()
    info = engine.probe(reference)
    assert info.duration_s is not None
    count = round(info.duration_s * 24)
    writer = encoder.Mp4Writer(pathlib.Path(output), 1280, 720, 24, pathlib.Path(reference), count / 24)
    for frame in video.iter_frames(pathlib.Path(reference), 24, count):
        writer.write(cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_LINEAR))
    writer.close()
    elapsed = time.monotonic() - started
    result.put((elapsed, count / 24, _peak_mb(), private.stop(), _cpu_s() - cpu))


def _render_job(character: str, reference: str, output: str, result: multiprocessing.Queue) -> None:
    from service import engine

    # As the worker runs renders: in a spare process that loaded the engine before the
    # job arrived (CALLBOARD_LOCAL_PREWARM). The load is timed too, as the cold start.
    loading = time.monotonic()
    engine.preload()
    private = _PrivatePeak()
    started, cpu = time.monotonic(), _cpu_s()
    kind = engine.probe(character).kind
    rendered = engine.render(
        engine.RenderRequest(
            character_path=pathlib.Path(character),
            character_type=kind,
            reference_path=pathlib.Path(reference),
            output_path=pathlib.Path(output),
            ratio="1280:720",
        )
    )
    elapsed = time.monotonic() - started
    result.put((elapsed, rendered.duration_s, _peak_mb(), private.stop(), started - loading, _cpu_s() - cpu))


def _spawned(target: object, *args: str) -> tuple[float, ...]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))  # type: ignore[arg-type]
    proc.start()
    while True:  # a job that dies (an error, the OOM killer) must not leave us waiting
        try:
            value = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive() and queue.empty():
                raise RuntimeError(
                    f"the job's process ended without a result (exit code {proc.exitcode})"
                ) from None
    proc.join()
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="photo-12s,photo-30s,video-30s")
    parser.add_argument("--work-dir", type=pathlib.Path, default=pathlib.Path("/tmp/callboard-render-bench"))
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run floor and render alternately this many times and keep each one's best "
        "(shared machines: other load only ever adds time)",
    )
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"{'case':22} {'clip s':>6} {'floor s':>8} {'floor RTF':>9} {'render s':>9} {'RTF':>5} "
        f"{'render/floor':>12} {'pairs':>11} {'floor CPU s':>11} {'render CPU s':>12} {'floor MB':>8} {'render MB':>9} "
        f"{'private MB':>10} {'cold start s':>12}"
    )
    for name in args.cases.split(","):
        character, reference = CASES[name]
        if reference == "loop30":
            ref = make_loop(MEDIA / "driving_expressive.mp4", args.work_dir / "reference_30s.mp4", 30.0)
        else:
            ref = MEDIA / reference
        floors, renders = [], []
        for _ in range(max(1, args.repeat)):  # alternating, so slow spells hit both alike
            floors.append(_spawned(_floor_job, str(ref), str(args.work_dir / f"{name}-floor.mp4")))
            renders.append(
                _spawned(
                    _render_job, str(MEDIA / character), str(ref), str(args.work_dir / f"{name}-render.mp4")
                )
            )
        # Times: each one's best run (CPU: that run's). Memory: the worst run's.
        best_floor, best_render = min(floors), min(renders)
        floor_s, clip_s, floor_cpu = best_floor[0], best_floor[1], best_floor[4]
        render_s, render_cpu = best_render[0], best_render[5]
        load_s = min(r[4] for r in renders)
        pairs = [r[0] / f[0] for f, r in zip(floors, renders, strict=True)]  # each side by side
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if len(pairs) > 1 else "-"
        floor_mb = max(f[2] for f in floors)
        render_mb, private_mb = max(r[2] for r in renders), max(r[3] for r in renders)
        print(
            f"{name:22} {clip_s:6.1f} {floor_s:8.2f} {floor_s / clip_s:9.2f} {render_s:9.2f} "
            f"{render_s / clip_s:5.2f} {render_s / floor_s:12.2f} {spread:>11} {floor_cpu:11.2f} {render_cpu:12.2f} "
            f"{floor_mb:8.0f} {render_mb:9.0f} "
            f"{private_mb:10.0f} {load_s:12.2f}",
            flush=True,
        )
    print("goals: RTF <= 1.0, render/floor <= 2.0, peak <= 600 MB (30 s jobs)")
    print(
        f"CPU s: all the process's threads over the timed run; on {os.cpu_count()} cores a run "
        "can take no less than its CPU seconds over the cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
