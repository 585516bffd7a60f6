"""Compiled inner loops (numba, compiled once and cached on disk): the warp's, the clean
plate's (``blend_plate``; its texture fill's patch search, ``patch_search``,
``patch_vote`` and ``copy_matched``) and the HDR tone map's (``tone_map``).

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
    # The clean plate's texture fill, once per still character.
    image = np.zeros((9, 9, 3), dtype=np.float32)
    hole = np.zeros((9, 9), dtype=np.bool_)
    hole[4, 4] = True
    source = np.zeros((9, 9), dtype=np.bool_)
    source[4, 4] = True
    nearest = np.full((9, 9, 2), 4, dtype=np.int64)
    patch_search(image, hole, source, nearest, 1, 1, 0)
    patch_vote(image, hole, hole, nearest, 1)
    copy_matched(pixels, pixels.copy(), np.ascontiguousarray(hole[:2, :2]), nearest, 1)
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


@numba.njit(cache=True, nogil=True)
def _next_random(state: np.ndarray) -> np.uint64:  # pragma: no cover - compiled
    """xorshift64: the patch search's own generator, so its choices depend on the seed alone."""
    x = state[0]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    state[0] = x
    return x


@numba.njit(cache=True, nogil=True)
def _patch_distance(
    image: np.ndarray, y: int, x: int, sy: int, sx: int, radius: int, cap: float
) -> float:  # pragma: no cover - compiled
    """Sum of squared differences between the patch around (y, x), clipped to the image,
    and the same offsets around (sy, sx) (whose patch lies inside); stops past ``cap``."""
    h, w = image.shape[0], image.shape[1]
    total = 0.0
    for dy in range(-radius, radius + 1):
        if y + dy < 0 or y + dy >= h:
            continue
        for dx in range(-radius, radius + 1):
            if x + dx < 0 or x + dx >= w:
                continue
            for c in range(3):
                e = image[y + dy, x + dx, c] - image[sy + dy, sx + dx, c]
                total += e * e
        if total > cap:
            break
    return total


@numba.njit(cache=True, nogil=True)
def patch_search(
    image: np.ndarray,
    domain: np.ndarray,
    source: np.ndarray,
    nearest: np.ndarray,
    radius: int,
    passes: int,
    seed: int,
) -> None:  # pragma: no cover - compiled
    """PatchMatch (Barnes et al. 2009): improve ``nearest`` (H, W, 2) int64, for every
    ``domain`` pixel the (y, x) of a ``source`` pixel whose patch looks like its own in
    ``image`` (H, W, 3) float32. Each pass visits the domain in scan order (every other
    pass backwards), trying the neighbours' matches shifted by one pixel (propagation)
    and random ones around the best so far at halving distances (search). ``source``
    pixels' patches must lie inside the image."""
    h, w = source.shape
    state = np.empty(1, dtype=np.uint64)
    state[0] = np.uint64(seed) * np.uint64(2654435761) + np.uint64(0x9E3779B97F4A7C15)
    ys, xs = np.nonzero(domain)
    n = len(ys)
    cost = np.empty(n, dtype=np.float64)
    for k in range(n):
        cost[k] = _patch_distance(
            image, ys[k], xs[k], nearest[ys[k], xs[k], 0], nearest[ys[k], xs[k], 1], radius, 1e300
        )
    widest = max(h, w)
    for p in range(passes):
        step = 1 if p % 2 == 0 else -1
        for i in range(n):
            k = i if step == 1 else n - 1 - i
            y, x = ys[k], xs[k]
            best, by, bx = cost[k], nearest[y, x, 0], nearest[y, x, 1]
            for q in range(2):
                ny, nx = (y - step, x) if q == 0 else (y, x - step)
                if ny < 0 or ny >= h or nx < 0 or nx >= w or not domain[ny, nx]:
                    continue
                sy, sx = nearest[ny, nx, 0] + y - ny, nearest[ny, nx, 1] + x - nx
                if 0 <= sy < h and 0 <= sx < w and source[sy, sx]:
                    d = _patch_distance(image, y, x, sy, sx, radius, best)
                    if d < best:
                        best, by, bx = d, sy, sx
            reach = widest
            while reach >= 1:
                span = np.uint64(2 * reach + 1)
                sy = by + int(_next_random(state) % span) - reach
                sx = bx + int(_next_random(state) % span) - reach
                if 0 <= sy < h and 0 <= sx < w and source[sy, sx]:
                    d = _patch_distance(image, y, x, sy, sx, radius, best)
                    if d < best:
                        best, by, bx = d, sy, sx
                reach //= 2
            cost[k] = best
            nearest[y, x, 0], nearest[y, x, 1] = by, bx


@numba.njit(cache=True, nogil=True)
def patch_vote(
    image: np.ndarray, hole: np.ndarray, domain: np.ndarray, nearest: np.ndarray, radius: int
) -> None:  # pragma: no cover - compiled
    """Repaint the ``hole`` pixels of ``image`` (H, W, 3) float32, each as the mean of
    what every matched patch covering it puts there (the step that follows each search)."""
    h, w = hole.shape
    total = np.zeros((h, w, 3), dtype=np.float32)
    count = np.zeros((h, w), dtype=np.float32)
    ys, xs = np.nonzero(domain)
    for k in range(len(ys)):
        y, x = ys[k], xs[k]
        sy, sx = nearest[y, x, 0], nearest[y, x, 1]
        for dy in range(max(-radius, -y), min(radius, h - 1 - y) + 1):
            for dx in range(max(-radius, -x), min(radius, w - 1 - x) + 1):
                if hole[y + dy, x + dx]:
                    for c in range(3):
                        total[y + dy, x + dx, c] += image[sy + dy, sx + dx, c]
                    count[y + dy, x + dx] += 1.0
    for y in range(h):
        for x in range(w):
            if hole[y, x] and count[y, x] > 0:
                for c in range(3):
                    image[y, x, c] = total[y, x, c] / count[y, x]


@numba.njit(cache=True, nogil=True)
def copy_matched(
    image: np.ndarray, out: np.ndarray, hole: np.ndarray, nearest: np.ndarray, step: int
) -> None:  # pragma: no cover - compiled
    """Fill the ``hole`` pixels of ``out`` (H, W, 3) uint8 from ``image`` at full
    resolution through the matches ``nearest`` found on the grid of ``step`` x ``step``
    cells: each takes the pixel as far from it as the match of each of its four nearest
    cells is from that cell, blended bilinearly. Where neighbouring cells agree this
    copies the source's own detail."""
    h, w = hole.shape
    rows, cols = nearest.shape[0], nearest.shape[1]
    inv = 1.0 / step
    for y in range(h):
        fy = (y + 0.5) * inv - 0.5
        i0 = min(max(int(np.floor(fy)), 0), rows - 1)
        i1 = min(i0 + 1, rows - 1)
        wy = min(max(fy - i0, 0.0), 1.0)
        for x in range(w):
            if not hole[y, x]:
                continue
            fx = (x + 0.5) * inv - 0.5
            j0 = min(max(int(np.floor(fx)), 0), cols - 1)
            j1 = min(j0 + 1, cols - 1)
            wx = min(max(fx - j0, 0.0), 1.0)
            acc0 = acc1 = acc2 = 0.0
            for i, j, weight in (
                (i0, j0, (1 - wy) * (1 - wx)),
                (i0, j1, (1 - wy) * wx),
                (i1, j0, wy * (1 - wx)),
                (i1, j1, wy * wx),
            ):
                sy = min(max(y + (nearest[i, j, 0] - i) * step, 0), h - 1)
                sx = min(max(x + (nearest[i, j, 1] - j) * step, 0), w - 1)
                acc0 += weight * image[sy, sx, 0]
                acc1 += weight * image[sy, sx, 1]
                acc2 += weight * image[sy, sx, 2]
            out[y, x, 0] = np.uint8(acc0 + 0.5)
            out[y, x, 1] = np.uint8(acc1 + 0.5)
            out[y, x, 2] = np.uint8(acc2 + 0.5)
