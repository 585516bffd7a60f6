"""Piecewise-affine backward warping on a downsampled map, restricted to a region.

A warp is a list of *shapes* in destination space, painted in order (later shapes hide
earlier ones, which gives 2.5D occlusion when face triangles are painted far-to-near),
each with the affine map from destination to source pixels. The shapes are rasterised
onto a coarse grid (every ``downsample`` pixels) by a compiled kernel (``raster``) that
writes each covered sample's source coordinates, and the coordinate maps are upsampled
linearly before ``cv2.remap``. A piecewise-affine map is continuous, so the upsampling is exact
except within a pixel of a fold. Samples no shape covers map to themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: The 2x3 affine that leaves everything where it is.
IDENTITY = np.hstack([np.eye(2), np.zeros((2, 1))])
IDENTITY.flags.writeable = False


def apply_affine(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points ``pts`` (N, 2) moved by the 2x3 ``affine``."""
    return pts @ affine[:, :2].T + affine[:, 2]


def det2(m: np.ndarray) -> float:
    return float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])


def det3(m: np.ndarray) -> float:
    """3x3 determinant in closed form (LAPACK's is threaded by OpenBLAS: ``inv2``)."""
    return float(
        m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
        - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
        + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0])
    )


def inv2(m: np.ndarray) -> np.ndarray:
    """2x2 inverse in closed form. ``np.linalg.inv`` goes through OpenBLAS, whose worker
    threads then spin on the other core: one call per frame cost a render ~20 % more CPU."""
    return np.array([[m[1, 1], -m[0, 1]], [-m[1, 0], m[0, 0]]]) / det2(m)


def parabola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The least-squares parabola ``y = c x**2 + b x + a`` through the points (``x``,
    ``y``; at least three distinct x) as (c, b, a). Solved in closed form from its
    normal equations, not by LAPACK as numpy's polynomial fit: the per-frame path makes no
    LAPACK calls, whose OpenBLAS threads each call wakes (``inv2``)."""
    basis = np.stack([x * x, x, np.ones_like(x)])  # (3, N)
    normal = basis @ basis.T
    rhs = basis @ y
    det = det3(normal)
    c, b, a = (det3(np.where(np.arange(3) == k, rhs[:, None], normal)) / det for k in range(3))
    return c, b, a


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine, as a 2x3 affine (closed form, like ``inv2``)."""
    lin = inv2(affine[:, :2])
    return np.hstack([lin, (-lin @ affine[:, 2])[:, None]])


def smoothstep(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, and a smooth (C1) ramp between (a 0-d array for a
    number)."""
    t = np.clip((np.asarray(x) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def signed_areas(tri: np.ndarray) -> np.ndarray:
    """Twice the signed area of each (K, 3, 2) triangle (its sign: which way it faces)."""
    a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def triangle_affines(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle affine maps dst -> src for (K, 3, 2) corner arrays.

    Returns (affines (K, 2, 3), valid (K,) bool); degenerate destination triangles are
    invalid (nothing would be painted for them anyway). Solved in closed form (Cramer),
    which is several times faster than a batched ``np.linalg.solve`` for 3x3 systems.
    """
    d0, d1, d2 = dst[:, 0], dst[:, 1], dst[:, 2]
    e1, e2 = d1 - d0, d2 - d0  # (K, 2)
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    valid = np.abs(det) > 1e-6
    inv_det = np.where(valid, 1.0 / np.where(valid, det, 1.0), 0.0)
    # Inverse of [e1 e2] (columns): maps a dst offset to barycentric (u, v).
    inv = np.empty((len(dst), 2, 2))
    inv[:, 0, 0] = e2[:, 1] * inv_det
    inv[:, 0, 1] = -e2[:, 0] * inv_det
    inv[:, 1, 0] = -e1[:, 1] * inv_det
    inv[:, 1, 1] = e1[:, 0] * inv_det
    s0 = src[:, 0]
    f = np.stack([src[:, 1] - s0, src[:, 2] - s0], axis=2)  # (K, 2, 2) columns f1 f2
    lin = f @ inv  # (K, 2, 2): src offset per dst offset
    trans = s0 - np.einsum("kij,kj->ki", lin, d0)
    return np.concatenate([lin, trans[:, :, None]], axis=2), valid


@dataclasses.dataclass(frozen=True)
class Roi:
    """A pixel rectangle [x0, x1) x [y0, y1) of the canvas."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @staticmethod
    def around(points: np.ndarray, margin: float, width: int, height: int, align: int) -> Roi:
        lo = np.floor(points.min(axis=0) - margin)
        hi = np.ceil(points.max(axis=0) + margin)
        x0, y0 = max(0, int(lo[0]) // align * align), max(0, int(lo[1]) // align * align)
        x1, y1 = min(width, int(hi[0])), min(height, int(hi[1]))
        return Roi(x0, y0, max(x1, x0 + align), max(y1, y0 + align))


def polygon_mask(
    shape: tuple[int, ...],
    poly: np.ndarray,
    origin: Sequence[float] | np.ndarray,
    *,
    quarter: bool = True,
    antialiased: bool = True,
) -> np.ndarray:
    """A 0/255 uint8 mask of ``shape`` (H, W) over the box whose top-left corner is at
    ``origin`` (x, y), filled inside ``poly`` (N, 2, canvas pixels): placed to a quarter
    pixel (or to the nearest), its edge antialiased or not."""
    import cv2

    mask = np.zeros(shape[:2], dtype=np.uint8)
    bits = 2 if quarter else 0
    line = cv2.LINE_AA if antialiased else cv2.LINE_8
    at = np.round((poly - np.asarray(origin, dtype=np.float64)) * (1 << bits)).astype(np.int32)
    cv2.fillPoly(mask, [at], (255,), line, bits)
    return mask


class Warper:
    """Builds dst->src coordinate maps over an ROI from shapes painted in order.

    The whole ROI is sampled every ``downsample`` pixels; ``details`` (sub-ROIs with
    their own, finer steps: the head, the eyes, the mouth) are sampled again more finely
    and pasted over it, because where neighbouring pieces map far apart (a lid sliding
    over an eyeball, a turned cheek against the hair) a coarse grid shows as steps.
    """

    def __init__(self, downsample: int = 4) -> None:
        self.f = downsample

    def maps(
        self,
        roi: Roi,
        triangles: np.ndarray,
        tri_affines: np.ndarray,
        tri_valid: np.ndarray,
        details: Sequence[tuple[Roi, int]] = (),
        coarse_shapes: int | None = None,
        within: tuple[int, int, int, int] | None = None,
    ) -> WarpMaps:
        """Coordinate maps for ``roi``.

        ``triangles`` (K, P, 2) destination polygons (P = 3 for triangles; callers may pass
        any convex P-gon) in paint order with their affines (K, 2, 3) dst -> src.

        ``coarse_shapes`` (optional): only the first that many shapes are painted on the
        coarse grid; the caller guarantees the others lie inside ``details[0]`` with a
        margin of at least ``downsample`` pixels. The coarse samples they cover are then
        interpolated from that finer patch instead (the full-resolution maps there come
        from the patch anyway; the coarse ones still drive ``apply_coarse``). This saves
        rasterising the whole face mesh twice.

        ``within`` (x0, y0, x1, y1): the part of the image there is to sample (a picture
        with bands beside it, or the canvas); no sample is taken from past its edges
        (``keep_within``).
        """
        coef = np.ascontiguousarray(tri_affines.reshape(-1, 6), dtype=np.float64)
        # Shape bounds once (an elementwise min/max over corners: numpy's reduction over a
        # short middle axis is ~10x slower), used to cull shapes per sampled region.
        corners = [triangles[:, i] for i in range(triangles.shape[1])]
        bounds = np.concatenate([np.minimum.reduce(corners), np.maximum.reduce(corners)], axis=1)
        patches = []
        for sub, step in details:
            sub = Roi(max(sub.x0, roi.x0), max(sub.y0, roi.y0), min(sub.x1, roi.x1), min(sub.y1, roi.y1))
            if sub.x1 - sub.x0 >= 2 * step and sub.y1 - sub.y0 >= 2 * step:
                px, py = _sample(sub, step, triangles, tri_valid, bounds, coef)
                if within is not None:
                    keep_within(sub, step, px, py, within)
                patches.append((sub, step, px, py))
            elif not patches:
                coarse_shapes = None  # no first patch to take the rest from
        coarse_valid = tri_valid
        if coarse_shapes is not None:
            coarse_valid = tri_valid.copy()
            coarse_valid[coarse_shapes:] = False
        lo_x, lo_y = _sample(roi, self.f, triangles, coarse_valid, bounds, coef)
        if within is not None:  # (before filling from the patch, which was)
            keep_within(roi, self.f, lo_x, lo_y, within)
        if coarse_shapes is not None and tri_valid[coarse_shapes:].any():
            rest = bounds[coarse_shapes:][tri_valid[coarse_shapes:]]
            _fill_from_patch(
                roi, self.f, lo_x, lo_y, patches[0], rest[:, :2].min(axis=0), rest[:, 2:].max(axis=0)
            )
        return WarpMaps(roi=roi, f=self.f, lo_x=lo_x, lo_y=lo_y, patches=patches)


#: ``keep_within``: a sample is taken at most this share of its distance to the edge
#: it moves away from (from half of that, eased): what moves away from the edge is
#: stretched by at most 1 / (1 - share) beside it.
KEEP_WITHIN_SHARE = 0.5
#: ...the distance counted as this many px more: a sample on the edge may then lie
#: a px or two past it (the edge's pixels repeated that far do not show), and the
#: samples of a body barely lifted from the bottom edge stay as they are.
KEEP_WITHIN_SLACK = 4.0


def keep_within(
    roi: Roi, f: int, map_x: np.ndarray, map_y: np.ndarray, box: tuple[int, int, int, int]
) -> None:
    """Keep the dst -> src maps sampled every ``f`` px over ``roi`` from reaching past
    the edges of ``box`` (x0, y0, x1, y1), in place.

    A sample taken from farther away than ``KEEP_WITHIN_SHARE`` of its distance to the
    edge it moves away from is drawn back, smoothly (from half of that): what moves
    away from an edge is stretched over the strip beside it, at most twice. Taken past
    the edge, a sample showed what lies there: the edge's last row or column repeated
    as streaks, or a band's blur (a close-up whose forehead the picture cuts, its head
    moving down); and where the person's mask followed it, the background plate's
    smeared fill. Samples that stay nearer their own place are left exactly as they
    are, and so are those outside ``box`` (not shown) by more than a step.
    """
    _, gx, gy = _grid(roi, f)
    x0, y0, x1, y1 = box
    for axis, grid, maps, lo, hi in ((1, gx, map_x, x0, x1 - 1), (0, gy, map_y, y0, y1 - 1)):
        # A sample is drawn back where its reach exceeds half its ``most``, so only
        # within 2 * reach / share of an edge (the columns or rows by the edges, a few
        # per frame: all that is looked at).
        reach_most = float(np.abs(maps - np.expand_dims(grid, 1 - axis)).max())
        near = np.flatnonzero(np.minimum(grid - lo, hi - grid) < 2 * reach_most / KEEP_WITHIN_SHARE)
        if not len(near):
            continue
        lines = maps.take(near, axis=axis)
        at = np.expand_dims(grid[near], 1 - axis)
        moved = lines - at
        room = np.where(moved < 0, at - lo, hi - at)  # to the edge it moves away from
        # (samples up to a step outside count as on it: the pixels between them and the
        # first inside are interpolated from both)
        shown = room > -f
        room = np.maximum(room, 0.0)
        reach, most = np.abs(moved), KEEP_WITHIN_SHARE * (room + KEEP_WITHIN_SLACK)
        held = (reach > most / 2) & shown
        if held.any():
            lines = np.where(held, at + np.sign(moved) * _eased(reach, most), lines)
            if axis:
                maps[:, near] = lines
            else:
                maps[near] = lines


def _eased(reach: np.ndarray, most: np.ndarray) -> np.ndarray:
    """``reach`` (more than half of ``most``, which is positive) eased toward ``most``,
    never past it, with the slope it has at half (1)."""
    half = most / 2
    return (half + half * np.tanh((reach - half) / half)).astype(reach.dtype)


def _fill_from_patch(
    roi: Roi,
    f: int,
    lo_x: np.ndarray,
    lo_y: np.ndarray,
    patch: tuple[Roi, int, np.ndarray, np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
) -> None:
    """Overwrite the coarse samples within ``f`` px of the box [lo, hi] by bilinear
    interpolation of a finer patch's maps (exact inside each affine piece)."""
    import cv2

    sub, step, px, py = patch
    c0, s0 = (f - 1) / 2, (step - 1) / 2  # first sample centre of each grid, from its origin
    xs = roi.x0 + c0 + f * np.arange(lo_x.shape[1])
    ys = roi.y0 + c0 + f * np.arange(lo_x.shape[0])
    # Patch sample coordinates of the coarse samples to replace, kept inside the patch.
    jx = (xs - sub.x0 - s0) / step
    jy = (ys - sub.y0 - s0) / step
    cols = np.flatnonzero((xs >= lo[0] - f) & (xs <= hi[0] + f) & (jx >= 0) & (jx <= px.shape[1] - 1))
    rows = np.flatnonzero((ys >= lo[1] - f) & (ys <= hi[1] + f) & (jy >= 0) & (jy <= px.shape[0] - 1))
    if not len(cols) or not len(rows):
        return
    gx, gy = np.meshgrid(jx[cols].astype(np.float32), jy[rows].astype(np.float32))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    lo_x[box] = cv2.remap(px, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lo_y[box] = cv2.remap(py, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _sample(
    roi: Roi, f: int, triangles: np.ndarray, valid: np.ndarray, bounds: np.ndarray, affines: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """dst -> src maps at every ``f``-th pixel of ``roi`` (pixel centres aligned for resize).

    ``bounds`` (K, 4): each shape's x0, y0, x1, y1, to cull shapes that miss the grid;
    ``affines`` (K, 6) row-major dst -> src. Samples no shape covers map to themselves.
    """
    from service.engine import raster

    offset, gx, gy = _grid(roi, f)
    w_lo, h_lo = len(gx), len(gy)
    map_x = np.repeat(gx[None, :], h_lo, axis=0)
    map_y = np.repeat(gy[:, None], w_lo, axis=1)
    # Cull shapes entirely outside the grid (with a sample of slack).
    inside = np.flatnonzero(
        valid
        & (bounds[:, 2] >= offset[0] - f)
        & (bounds[:, 3] >= offset[1] - f)
        & (bounds[:, 0] < offset[0] + w_lo * f)
        & (bounds[:, 1] < offset[1] + h_lo * f)
    )
    pieces, owner = _triangulate(triangles[inside])
    fixed = np.round((pieces - offset) * (raster.ONE / f)).astype(np.int64)
    raster.paint_maps(map_x, map_y, fixed, affines[inside][owner], offset[0], offset[1], float(f))
    return map_x, map_y


def _grid(roi: Roi, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The samples every ``f`` pixels over ``roi``: the first one's (x, y) (float64) and
    every column's x and row's y (float32). Pixel centres are aligned so that
    ``_upsample`` (a resize by ``f``) puts each sample back where it was taken."""
    origin = np.array([roi.x0 + (f - 1) / 2, roi.y0 + (f - 1) / 2])
    w_lo, h_lo = -(-(roi.x1 - roi.x0) // f), -(-(roi.y1 - roi.y0) // f)
    gx = np.arange(w_lo, dtype=np.float32) * f + np.float32(origin[0])
    gy = np.arange(h_lo, dtype=np.float32) * f + np.float32(origin[1])
    return origin, gx, gy


def _triangulate(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex (K, P, 2) polygons as fan triangles (K * (P - 2), 3, 2), with the index of
    the polygon each came from (in order, so the painting order is kept)."""
    k, p = shapes.shape[:2]
    if p == 3:
        return shapes, np.arange(k)
    fans = np.stack([np.broadcast_to(shapes[:, :1], (k, p - 2, 2)), shapes[:, 1:-1], shapes[:, 2:]], axis=2)
    return fans.reshape(-1, 3, 2), np.repeat(np.arange(k), p - 2)


def _upsample(lo: np.ndarray, f: int, w: int, h: int) -> np.ndarray:
    import cv2

    if f == 1:
        return lo[:h, :w]
    size = (lo.shape[1] * f, lo.shape[0] * f)
    return cv2.resize(lo, size, interpolation=cv2.INTER_LINEAR)[:h, :w]


@dataclasses.dataclass(frozen=True)
class WarpMaps:
    """dst -> src coordinate maps of one ROI, sampled every ``f`` pixels (lo_x, lo_y),
    with finer ``patches`` (sub-ROI, step, map x, map y) pasted over."""

    roi: Roi
    f: int
    lo_x: np.ndarray
    lo_y: np.ndarray
    patches: list[tuple[Roi, int, np.ndarray, np.ndarray]]

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution maps, upsampled linearly (exact inside each affine piece)."""
        w, h = self.roi.x1 - self.roi.x0, self.roi.y1 - self.roi.y0
        mx, my = _upsample(self.lo_x, self.f, w, h), _upsample(self.lo_y, self.f, w, h)
        if self.patches and self.f == 1:
            mx, my = mx.copy(), my.copy()
        for sub, step, px, py in self.patches:
            sw, sh = sub.x1 - sub.x0, sub.y1 - sub.y0
            ys = slice(sub.y0 - self.roi.y0, sub.y1 - self.roi.y0)
            xs = slice(sub.x0 - self.roi.x0, sub.x1 - self.roi.x0)
            mx[ys, xs] = _upsample(px, step, sw, sh)
            my[ys, xs] = _upsample(py, step, sw, sh)
        return mx, my

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` resampled over the ROI at full resolution."""
        mx, my = self.full()
        return remap(image, mx, my)

    def apply_coarse(self, image: np.ndarray, keep: float = 0.0) -> np.ndarray:
        """``image`` resampled at the coarse grid, then upsampled: for smooth images (masks).

        ``keep`` > 0: the larger of the resampled image and the unmoved one times
        ``keep`` (at most 1) at each sample — a person mask covering both where the
        person went and, firmly, where they were."""
        lo = self.coarse(image)
        if keep > 0:
            still = self.coarse(image, moved=False)
            if keep != 1.0:
                np.minimum(still * np.float32(keep), np.float32(1.0), out=still)
            np.maximum(lo, still, out=lo)
        return self.upsample(lo)

    def coarse(self, image: np.ndarray, moved: bool = True) -> np.ndarray:
        """``image`` sampled at the coarse grid, warped (or, ``moved=False``, as it is)."""
        if moved:
            return remap(image, self.lo_x, self.lo_y)
        _, gx, gy = _grid(self.roi, self.f)
        shape = self.lo_x.shape
        return remap(image, np.broadcast_to(gx, shape), np.broadcast_to(gy[:, None], shape))

    def displacement(self) -> np.ndarray:
        """How far (px) each coarse sample takes its source from: 0 where nothing moved."""
        _, gx, gy = _grid(self.roi, self.f)
        return np.hypot(self.lo_x - gx, self.lo_y - gy[:, None])

    def upsample(self, lo: np.ndarray) -> np.ndarray:
        """Coarse samples over the ROI (``coarse``) upsampled to its pixels."""
        return _upsample(lo, self.f, self.roi.x1 - self.roi.x0, self.roi.y1 - self.roi.y0)


@dataclasses.dataclass(frozen=True)
class Sampled:
    """Where the pixels of an ROI of a warped frame were sampled from: the picture and
    the ROI's full-resolution dst -> src maps (``WarpMaps.full``)."""

    picture: np.ndarray
    roi: Roi
    map_x: np.ndarray
    map_y: np.ndarray

    def maps(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The maps of the frame's box [x0, x1) x [y0, y1), or None where it leaves the ROI."""
        roi = self.roi
        if x0 < roi.x0 or y0 < roi.y0 or x1 > roi.x1 or y1 > roi.y1:
            return None
        rows, cols = slice(y0 - roi.y0, y1 - roi.y0), slice(x0 - roi.x0, x1 - roi.x0)
        return self.map_x[rows, cols], self.map_y[rows, cols]


def remap(image: np.ndarray, mapx: np.ndarray, mapy: np.ndarray) -> np.ndarray:
    """Sample ``image`` at the maps (bilinear, edges replicated)."""
    import cv2

    return cv2.remap(image, mapx, mapy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
