"""``render``: the whole job, streamed frame by frame.

Order of work: validate both inputs (probe), prepare the character (face, framing,
segmentation), then stream. Three threads overlap: the driver thread decodes the
reference and tracks the performer's face (``driver.stream``), the main thread
retargets, warps, composites, paints the mouth and adds the camera drift, and the
encoder thread runs x264 and muxes the reference's audio. Queues between them are a few
frames deep, so memory stays flat whatever the clip length. The output appears
atomically at ``output_path`` only when complete.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from service.engine import assets, contracts

if TYPE_CHECKING:
    from service.engine import character, driver, framing, retarget, warp

log = logging.getLogger(__name__)

#: Share of the progress bar spent preparing the character before the first frame.
PREPARE_SHARE = 0.03
#: Video characters: the gain on the person mask where the person was (see _animate):
#: the warped picture fully covers the person's soft edge from mask 1/8 up.
VIDEO_KEEP = 8.0
#: Warp map resolution divisor.
MAP_DOWNSAMPLE = 4
#: Memory for reference frames decoded ahead by the rest scan (decoding overlaps the
#: face detections).
REST_AHEAD_BYTES = 16 * 1024 * 1024
#: Reference length tolerance around 3-30 s (container durations are rounded).
LENGTH_SLACK = 0.05
#: glibc malloc arenas for a render process (see ``preload``).
MALLOC_ARENAS = 2
#: Threads each OpenCV call may use in a render process (see ``preload``).
OPENCV_THREADS = 1


def render(
    req: contracts.RenderRequest,
    progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> contracts.RenderResult:
    """Render ``req`` to ``req.output_path``; see the package docstring for the contract."""
    width, height = _check_request(req)
    report = progress or (lambda _p: None)
    cancelled = should_cancel or (lambda: False)
    output = pathlib.Path(req.output_path)
    tmp = contracts.partial_path(output, os.getpid())
    try:
        result = _render(req, width, height, tmp, report, cancelled)
        os.replace(tmp, output)
    except (contracts.EngineError, contracts.RenderCancelled):
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        log.exception("render failed unexpectedly")
        raise contracts.EngineError("INTERNAL", "The render failed unexpectedly.") from exc
    except BaseException:  # Ctrl-C, SystemExit: stopped, but nothing left behind either
        tmp.unlink(missing_ok=True)
        raise
    report(1.0)
    return result


def preload() -> None:
    """Load everything a render needs but no particular job: the libraries (MediaPipe
    alone takes about a second to import), the face models' code, the compiled kernels
    and OpenCV's colour tables. A process that called this starts rendering at once;
    the local provider calls it in its spare render processes before any job arrives.

    It also caps glibc's malloc arenas for the process (``MALLOC_ARENAS``): a render's
    half-dozen threads each allocate frame-sized buffers, and with an arena per thread
    their freed memory is not shared between them (a 30 s video render peaks ~20 MB
    higher, no faster). And it keeps OpenCV to the calling thread (``OPENCV_THREADS``):
    a render already keeps both cores busy with its own threads, and OpenCV's pool,
    splitting each call's rows across the cores, spent ~0.9 s of CPU a 12 s render
    handing them out and waiting on them (same pixels either way)."""
    _limit_malloc_arenas(MALLOC_ARENAS)
    import av  # noqa: F401
    import cv2

    cv2.setNumThreads(OPENCV_THREADS)
    from scipy.spatial import Delaunay  # noqa: F401

    from service.engine import (  # noqa: F401
        camera,
        character,
        composite,
        driver,
        encoder,
        eyeballs,
        landmarks,
        mouth,
        raster,
        retarget,
        video,
        warp,
    )

    landmarks.preload()
    raster.warm_up()
    # OpenCV builds its Lab tables on the first conversion to Lab (the drawn-eye search's),
    # which took ~0.27 s inside a still character's preparation.
    cv2.cvtColor(np.zeros((1, 1, 3), dtype=np.uint8), cv2.COLOR_BGR2LAB)


def _limit_malloc_arenas(count: int) -> bool:
    """``mallopt(M_ARENA_MAX, count)`` where the C library is glibc; True if applied."""
    from service.engine import encoder

    return encoder.mallopt(encoder.M_ARENA_MAX, count)


def _check_request(req: contracts.RenderRequest) -> tuple[int, int]:
    if req.ratio not in contracts.RATIOS:
        raise ValueError(f"unknown ratio {req.ratio!r}")
    if req.expression_intensity not in range(1, 6):
        raise ValueError("expression_intensity must be 1..5")
    if not 0 <= req.seed <= 0xFFFFFFFF:
        raise ValueError("seed must be 0..4294967295")
    if req.character_type not in ("image", "video"):
        raise ValueError("character_type must be 'image' or 'video'")
    return contracts.RATIOS[req.ratio]


def reference_frames(duration_s: float) -> int:
    """Output frame count for a reference of ``duration_s`` seconds."""
    return max(1, int(round(duration_s * contracts.OUTPUT_FPS)))


def _render(
    req: contracts.RenderRequest,
    width: int,
    height: int,
    tmp: pathlib.Path,
    report: Callable[[float], None],
    cancelled: Callable[[], bool],
) -> contracts.RenderResult:
    from service.engine import camera, character, driver, encoder, mouth, retarget, topology, video, warp

    fps = contracts.OUTPUT_FPS
    ref = assets.probe(req.reference_path, video_only=True)
    if ref.kind != "video" or ref.duration_s is None:
        raise contracts.asset_invalid("The reference must be a video.")
    if not (
        contracts.MIN_REFERENCE_S - LENGTH_SLACK <= ref.duration_s <= contracts.MAX_REFERENCE_S + LENGTH_SLACK
    ):
        raise contracts.asset_invalid(
            f"The reference video is {ref.duration_s:.1f} s long; it must be 3 to 30 seconds."
        )
    char_info = assets.probe(req.character_path)
    if char_info.kind != req.character_type:
        raise contracts.asset_invalid(
            f"The character was declared as {req.character_type} but is {char_info.kind}."
        )
    count = reference_frames(ref.duration_s)
    report(0.0)
    ticker = _Ticker(report, cancelled)
    _check_cancel(cancelled)

    # Preparation: PREPARE_SHARE of the bar, half for the character, half for the rest
    # scan. The scan (decoding the whole reference) runs on a thread meanwhile; progress
    # and cancellation callbacks are only ever called from this thread.
    prep_steps = iter(np.linspace(0.0, PREPARE_SHARE / 2, 40))
    scan_w, scan_h = driver.frame_size(ref.width, ref.height)
    ahead = max(1, REST_AHEAD_BYTES // max(1, scan_w * scan_h * 3))
    with _RestScan(req.reference_path, fps, count, ahead) as scan:
        if req.character_type == "image":
            still = character.StillCharacter(
                req.character_path,
                width,
                height,
                step=lambda: ticker.tick(next(prep_steps, PREPARE_SHARE / 2)),
            )
            char: character.StillCharacter | character.VideoCharacter = still
            centre = still.frame.points[topology.STABLE, :2].mean(axis=0)
            drift: camera.CameraDrift | None = camera.CameraDrift(
                req.seed, width, height, (float(centre[0]), float(centre[1]))
            )
        else:
            char = character.VideoCharacter(
                req.character_path,
                width,
                height,
                count,
                fps,
                step=lambda: ticker.tick(next(prep_steps, PREPARE_SHARE / 2)),
                duration_s=char_info.duration_s,  # probed above: not read again
            )
            drift = None
        rest = scan.result(lambda done: ticker.tick(PREPARE_SHARE / 2 * (1 + done)))
    if rest is None:
        raise contracts.asset_invalid(
            "No face was found in the reference video; the performer's face must be clearly visible."
        )
    model = retarget.DriverModel(rest.points, rest.eyes, rest.pose)
    retargeter = retarget.Retargeter(
        model,
        intensity=req.expression_intensity,
        body_control=req.body_control,
        video=req.character_type == "video",
    )
    neutral_gap = mouth.gap(rest.points)
    ticker.tick(PREPARE_SHARE)

    warper = warp.Warper(MAP_DOWNSAMPLE)
    finish = None if drift is None else (lambda frame, i: drift.apply(frame, i / fps))
    writer = encoder.Mp4Writer(tmp, width, height, fps, req.reference_path, count / fps, finish)
    try:
        with (
            contextlib.closing(video.prefetch(char.frames())) as char_frames,
            contextlib.closing(
                video.prefetch(
                    driver.stream(req.reference_path, fps, count, body=req.body_control, turned=rest.turned)
                )
            ) as samples,
            _frozen_heap(),
        ):
            painter: mouth.MouthPainter | None = None
            driver_colours = None
            settle = driver.Settle(fps)
            for i, (cf, sample) in enumerate(zip(char_frames, samples, strict=False)):  # chars: endless
                if driver_colours is None and sample.frame is not None:
                    driver_colours = mouth.MouthPainter.colours(sample.frame, sample.points)
                at_rest = settle(sample)  # eased toward the performer's rest while their face is lost
                if cf.rig is None:  # character face not found yet (video): pass through
                    out = cf.canvas
                else:
                    performer = model.decompose(sample.points, sample.torso).toward_rest(at_rest)
                    target = retargeter.target(cf.points, performer)
                    out = _animate(cf, target, warper, char.window)
                    if painter is None and driver_colours is not None:
                        own = mouth.MouthPainter.colours(cf.canvas, cf.points)
                        painter = mouth.MouthPainter.between(own, driver_colours)
                    if painter is not None and sample.frame is not None:
                        gap = (mouth.gap(sample.points) - neutral_gap) * (1.0 - at_rest)
                        strength = float(np.clip((gap - 0.02) / 0.06, 0.0, 1.0))
                        painter.paint(
                            out,
                            target.points,
                            sample.frame,
                            sample.points,
                            strength,
                            cf.rig.own_mouth(target),
                        )
                writer.write(out)
                ticker.tick(PREPARE_SHARE + (1 - PREPARE_SHARE) * (i + 1) / count)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return contracts.RenderResult(
        width=width, height=height, fps=fps, frames=count, duration_s=count / fps, has_audio=writer.has_audio
    )


def _animate(
    cf: character.CharacterFrame,
    target: retarget.TargetFace,
    warper: warp.Warper,
    window: framing.Window | None = None,
) -> np.ndarray:
    """Warp the character frame to the target face and lay it over its background; the
    person is kept inside the sharp picture's ``window`` when it does not cover the canvas."""
    from service.engine import composite, warp

    roi = cf.rig.moving_roi(target, warper.f)
    eyes = cf.rig.eyeballs(target)
    shapes, affines, valid = cf.rig.shapes(target, eyes)
    maps = warper.maps(
        roi, shapes, affines, valid, cf.rig.detail_rois(target), cf.rig.coarse_shapes, cf.rig.picture
    )
    if cf.plate_area is None:
        # Video: where the person was but no longer is, show the warped picture, not a
        # ghost. Firmly: the person's own soft edge, blended with what moved over it,
        # would show as a faint second outline of a shoulder that moved.
        mask = maps.apply_coarse(cf.mask, keep=VIDEO_KEEP if cf.background is cf.canvas else 0.0)
        back = cf.background[roi.slices]
    else:  # a still's plate, where the warp moved the person
        cover = maps.coarse(cf.mask)
        mask = maps.upsample(cover)
        back = composite.uncovered(cf.canvas, cf.background, cf.plate_area, maps, cover)
    if window is not None:
        mask = window.clip(mask, roi.x0, roi.y0)
    out = cf.base.copy()
    full = maps.full()
    composite.lay_person(out, roi, cf.canvas, full, back, mask)
    if cf.eyeballs is not None:  # the gaze shows the eyeball, not the lids, past its edge
        cf.eyeballs.paint(out, eyes)
    if cf.shut_eyes is not None:  # lids where the warp alone makes none (lids.ShutEyes)
        cf.shut_eyes.paint(out, target.points, cf.points, warp.Sampled(cf.canvas, roi, *full), target.head)
    return out


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Exempt everything allocated so far (the libraries, models, character) from the
    cyclic garbage collector while frames stream.

    Its full passes would otherwise walk the ~200,000 objects the imports made, every
    few hundred frames, holding the GIL every render thread needs; objects made while
    streaming are still collected as usual.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _RestScan:
    """``driver.rest_pose`` on a background thread, overlapping the character's preparation.

    Leaving the ``with`` block stops the scan (at its next sampled frame) and joins it.
    """

    def __init__(self, path: pathlib.Path, fps: int, count: int, ahead: int) -> None:
        from service.engine import driver

        self._stop = threading.Event()
        self._done = 0.0  # share of the sampled frames scanned (read by the main thread)
        self._outcome: tuple[driver.RestPose | None] | BaseException | None = None
        stride = max(1, count // driver.REST_SAMPLES)
        samples = -(-count // stride)  # frames rest_pose examines

        def step() -> None:
            if self._stop.is_set():
                raise _Stopped()
            self._done = min(1.0, self._done + 1 / samples)

        def run() -> None:
            try:
                self._outcome = (driver.rest_pose(path, fps, count, step=step, ahead=ahead),)
            except BaseException as exc:  # handed to the main thread
                self._outcome = exc

        self._thread = threading.Thread(target=run, name="engine-rest-scan", daemon=True)
        self._thread.start()

    def result(self, tick: Callable[[float], None]) -> driver.RestPose | None:
        """Wait for the rest pose, calling ``tick(share done)`` about every 50 ms."""
        while self._thread.is_alive():
            tick(self._done)
            self._thread.join(0.05)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome[0]

    def __enter__(self) -> _RestScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Stopped(Exception):
    """Raised inside the rest scan when the render no longer needs it."""


def _check_cancel(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise contracts.RenderCancelled()


class _Ticker:
    """Per-frame hook: checks cancellation every call, reports progress at most ~20x/s."""

    def __init__(self, report: Callable[[float], None], cancelled: Callable[[], bool]) -> None:
        self._report, self._cancelled = report, cancelled
        self._last = 0.0

    def tick(self, value: float) -> None:
        _check_cancel(self._cancelled)
        now = time.monotonic()
        if now - self._last >= 0.05:
            self._last = now
            self._report(min(value, 0.999))
