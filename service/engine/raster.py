"""Compiled inner loops (numba, compiled once and cached on disk): the warp's, the clean
plate's (``blend_plate``) and the HDR tone map's (``tone_map``).

``paint_maps`` rasterises a list of triangles, in order, onto a sample grid and writes
each covered sample's dst -> src coordinates from its triangle's affine: the warp's
per-frame hot loop. Done as one compiled call it is several times faster than one
OpenCV ``fillConvexPoly`` call per triangle followed by a gather, and it runs without
the GIL, so the other render threads are not held up by ~1,000 small calls a frame.

Coverage is exact and watertight: corners are in fixed point (1/16 of a sample), a
sample belongs to a triangle when its centre is inside, and a centre exactly on an edge
belongs to one side only (the top-left rule), so triangles sharing an edge never leave
a gap and never both claim a sample. Later triangles paint over earlier ones.
"""

from __future__ import annotations

import numba
import numpy as np

#: Fractional bits of the fixed-point corner coordinates (in sample units).
SHIFT = 4
ONE = 1 << SHIFT


@numba.njit(cache=True, nogil=True)
def paint_maps(
    map_x: np.ndarray,
    map_y: np.ndarray,
    corners: np.ndarray,
    affines: np.ndarray,
    origin_x: float,
    origin_y: float,
    step: float,
) -> None:  # pragma: no cover - compiled
    """Paint triangles onto the sample grid of ``map_x``/``map_y`` (float32, H x W).

    ``corners`` (K, 3, 2) int64: triangle corners in fixed point, sample (x, y) being at
    (x << SHIFT, y << SHIFT). ``affines`` (K, 6) float64: dst pixel -> src pixel, row
    major. Sample (x, y) is the pixel (origin_x + step * x, origin_y + step * y).
    Degenerate triangles paint nothing.
    """
    height, width = map_x.shape
    for t in range(corners.shape[0]):
        ax, ay = corners[t, 0, 0], corners[t, 0, 1]
        bx, by = corners[t, 1, 0], corners[t, 1, 1]
        cx, cy = corners[t, 2, 0], corners[t, 2, 1]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if area == 0:
            continue
        if area < 0:  # make the corners counter-clockwise (in y-down pixels: clockwise)
            bx, by, cx, cy = cx, cy, bx, by
        x0 = max((min(ax, bx, cx) + ONE - 1) >> SHIFT, 0)
        y0 = max((min(ay, by, cy) + ONE - 1) >> SHIFT, 0)
        x1 = min(max(ax, bx, cx) >> SHIFT, width - 1)
        y1 = min(max(ay, by, cy) >> SHIFT, height - 1)
        if x0 > x1 or y0 > y1:
            continue
        # Edge vectors; a sample on an edge counts only for "top-left" edges (bias 0).
        dx0, dy0 = bx - ax, by - ay
        dx1, dy1 = cx - bx, cy - by
        dx2, dy2 = ax - cx, ay - cy
        bias0 = 0 if (dy0 > 0 or (dy0 == 0 and dx0 < 0)) else 1
        bias1 = 0 if (dy1 > 0 or (dy1 == 0 and dx1 < 0)) else 1
        bias2 = 0 if (dy2 > 0 or (dy2 == 0 and dx2 < 0)) else 1
        a0, a1, a2 = affines[t, 0], affines[t, 1], affines[t, 2]
        a3, a4, a5 = affines[t, 3], affines[t, 4], affines[t, 5]
        for y in range(y0, y1 + 1):
            py = y << SHIFT
            gy = origin_y + step * y
            for x in range(x0, x1 + 1):
                px = x << SHIFT
                if dx0 * (py - ay) - dy0 * (px - ax) < bias0:
                    continue
                if dx1 * (py - by) - dy1 * (px - bx) < bias1:
                    continue
                if dx2 * (py - cy) - dy2 * (px - cx) < bias2:
                    continue
                gx = origin_x + step * x
                map_x[y, x] = a0 * gx + a1 * gy + a2
                map_y[y, x] = a3 * gx + a4 * gy + a5


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, not on the first frame."""
    grid = np.zeros((2, 2), dtype=np.float32)
    paint_maps(grid, grid.copy(), np.zeros((1, 3, 2), dtype=np.int64), np.zeros((1, 6)), 0.0, 0.0, 1.0)
    # As ``composite.uncovered`` calls it: a fresh array, and two views into pictures.
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    view = pixels[:, :1]
    samples = np.ones((1, 1), dtype=np.float32)
    blend_plate(view.copy(), view, view, samples, samples, 1, 0.0)
    # HDR references only, but compiling it on a fresh machine takes a second or two,
    # which belongs here, before a job arrives (from the disk cache: ~8 ms).
    levels = np.zeros(2, dtype=np.float32)
    tone_map(
        np.zeros((1, 1, 3), dtype=np.uint16),
        levels,
        np.zeros((3, 3), dtype=np.float32),
        levels.astype(np.uint8),
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def blend_plate(
    out: np.ndarray,
    plate: np.ndarray,
    back: np.ndarray,
    share: np.ndarray,
    cover: np.ndarray,
    step: int,
    eps: float,
) -> None:  # pragma: no cover - compiled
    """``out`` (H, W, 3) uint8 = ``plate`` blended over ``back`` by ``share`` sampled every
    ``step`` pixels (clipped to 0..1; upsampled bilinearly, pixel centres aligned as in
    ``warp.WarpMaps.upsample``). Pixels are left as they are in ``out`` where their four
    surrounding samples all have a ``share`` of at most ``eps``, or all a ``cover`` (the
    same grid: what will be laid over them) of at least ``1 - eps``.

    The plate shows behind a moved head, which covers most of it: skipping what is
    covered and what shows no plate, the blend touches a small part of the region: with
    working out where, 3.0-3.6 ms a frame of photo x expressive, where a blend over the
    whole region took 7-9 ms.
    """
    h, w = out.shape[0], out.shape[1]
    rows, cols = share.shape
    inv = 1.0 / step
    for i in range(-1, rows):  # the pixels between sample rows i and i + 1 ...
        i0, i1 = max(i, 0), min(i + 1, rows - 1)
        y0 = max(0, int(np.ceil((i + 0.5) * step - 0.5)))
        y1 = min(h, int(np.ceil((i + 1.5) * step - 0.5)))
        for j in range(-1, cols):  # ... and sample columns j and j + 1
            j0, j1 = max(j, 0), min(j + 1, cols - 1)
            a, b = share[i0, j0], share[i0, j1]
            c, d = share[i1, j0], share[i1, j1]
            if max(max(a, b), max(c, d)) <= eps:
                continue
            hidden = min(min(cover[i0, j0], cover[i0, j1]), min(cover[i1, j0], cover[i1, j1]))
            if hidden >= 1.0 - eps:
                continue
            x0 = max(0, int(np.ceil((j + 0.5) * step - 0.5)))
            x1 = min(w, int(np.ceil((j + 1.5) * step - 0.5)))
            for y in range(y0, y1):
                wy = min(max((y + 0.5) * inv - 0.5 - i, 0.0), 1.0)
                left, right = a + wy * (c - a), b + wy * (d - b)
                for x in range(x0, x1):
                    wx = min(max((x + 0.5) * inv - 0.5 - j, 0.0), 1.0)
                    s = min(max(left + wx * (right - left), 0.0), 1.0)
                    for ch in range(3):
                        v = plate[y, x, ch] * s + back[y, x, ch] * (1.0 - s)
                        out[y, x, ch] = np.uint8(v + 0.5)


@numba.njit(cache=True, nogil=True, fastmath=True)
def tone_map(
    signal: np.ndarray, linear: np.ndarray, matrix: np.ndarray, code: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """An HDR frame's (H, W, 3) uint16 R'G'B' ``signal`` as (H, W, 3) uint8 BGR: each
    channel's signal (top 12 bits) to light by the ``linear`` table, the 3x3 ``matrix``
    (rows: B, G, R out, scaled so that 1 is the brightest light shown), then each
    channel's light (indexed by its square root, which keeps precision in the shadows)
    to its ``code``. One pass, without the GIL: the same steps in NumPy took 30-50 ms a
    720p frame."""
    h, w = signal.shape[0], signal.shape[1]
    out = np.empty((h, w, 3), dtype=np.uint8)
    last = np.float32(code.shape[0] - 1)
    for y in range(h):
        for x in range(w):
            r = linear[signal[y, x, 0] >> 4]
            g = linear[signal[y, x, 1] >> 4]
            b = linear[signal[y, x, 2] >> 4]
            for c in range(3):
                v = matrix[c, 0] * r + matrix[c, 1] * g + matrix[c, 2] * b
                v = min(max(v, np.float32(0.0)), np.float32(1.0))
                out[y, x, c] = code[int(np.sqrt(v) * last + np.float32(0.5))]
    return out
