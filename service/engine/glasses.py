"""Glasses on a character: found by their bridge (``worn``), and the rim past each eye
found along its line (``find_rim``), so that as an eye shuts its rim is held where the
head alone takes it (``lids.ShutEyes``) instead of bent down with the lid and taken for
lashes by the lids' painting.

Bare skin between the eyes holds no thin line across the nose; a pair of glasses holds
its bridge there, in one piece reaching into both rims. Over a shutting eye, a rim that
passes through the band above the lid is as thin and as dark as a lash line: the warp
drags it down with the lid, and the lids' painting would lift it toward the skin and
hang it below the lid line, breaking the rim.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from service.engine import retarget, topology, warp

#: The picture between the eyes is looked at with the eye centres this many px apart...
SCALE = 120.0
#: ...over a region this many eye distances wide and high, centred between the eyes.
REGION = (1.4, 1.0)
#: Line structure: what differs from the picture closed (dark lines) or opened (light
#: ones) with a disc this many px across (at ``SCALE``): narrower than that...
LINE = 11
#: ...by more than this many grey levels and this many times the region's median.
LINE_GREY = (12.0, 3.0)
#: The bridge: line pixels in this share of the columns of the middle half between the
#: inner eye corners, from this many eye distances above the corners to below them...
BRIDGE_COLUMNS = 0.8
BRIDGE_SPAN = (0.4, 0.1)
#: ...in one piece at least this many eye distances wide (a bridge reaches into both
#: rims; a crease or a shadow on bare skin does not).
BRIDGE_WIDTH = 0.5
#: Eye centres closer than this many px leave a rim's line under a pixel wide: no
#: glasses are looked for.
MIN_EYE_DISTANCE = 40.0
#: A rim near an eye (``find_rim``): a line thinner (top to bottom) than this many eye
#: widths, dark or light against what is above and below it...
RIM_THIN = 0.1
#: ...by more than this many grey levels and this many times the box's median...
RIM_GREY = (10.0, 3.0)
#: ...in a piece reaching across this share of the box (a rim passes the eye's corners
#: on its way to the bridge and the temple; a lash, a crease, a lid's edge stop short)...
RIM_ACROSS = 0.85
#: ...and along one smooth curve (a parabola) in this share of the box's columns, its
#: line within this many px of the curve.
RIM_COLUMNS = 0.6
RIM_NEAR = 1.5
#: The straight line the curve is fitted from takes the pixels within this many eye
#: widths of it (a rim arches over an eye by a few px).
RIM_SEED = 0.08
#: The rim's line reaches this many px further from the curve (its shine above, its
#: shadow below)...
RIM_SPREAD = 2.5
#: ...and along it past gaps of up to this many columns.
RIM_GAP = 3
#: A rim is looked for with the eye at most this many px wide (a larger picture is
#: reduced), among at most this many of its line's pixels.
RIM_WIDTH = 60.0
RIM_PIXELS = 800


def worn(picture: np.ndarray, points: np.ndarray) -> bool:
    """Whether the face at ``points`` (478, 2+) in ``picture`` (BGR) wears glasses: thin
    line structure across the nose between the eyes, in one piece reaching both rims."""
    import cv2

    right = points[topology.RIGHT_EYE_RING, :2].mean(axis=0)
    left = points[topology.LEFT_EYE_RING, :2].mean(axis=0)
    distance = float(np.linalg.norm(left - right))
    if distance < MIN_EYE_DISTANCE:
        return False
    # The region between the eyes, levelled and scaled to ``SCALE``; a larger face is
    # reduced by area first (a thin line stays a faint line, not gaps).
    size = (int(REGION[0] * SCALE), int(REGION[1] * SCALE))
    factor = SCALE / distance
    source, shrink = picture, 1.0
    if factor < 1:
        source = cv2.resize(picture, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        shrink = source.shape[1] / picture.shape[1]
    centre = (right + left) / 2 * shrink
    turn = np.asarray(
        cv2.getRotationMatrix2D(
            (float(centre[0]), float(centre[1])), retarget.eye_line(points), factor / shrink
        ),
        dtype=np.float64,
    )
    turn[:, 2] += np.array(size, dtype=np.float64) / 2 - centre
    grey = cv2.cvtColor(
        cv2.warpAffine(source, turn, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
        cv2.COLOR_BGR2GRAY,
    )
    turn[:, :2] *= shrink  # picture -> region
    inner_r, inner_l = warp.apply_affine(
        turn, points[[topology.RIGHT_EYE_CORNERS[0], topology.LEFT_EYE_CORNERS[0]], :2].astype(np.float64)
    )
    gap = inner_l[0] - inner_r[0]
    x0, x1 = int(inner_r[0] + gap / 4), int(np.ceil(inner_l[0] - gap / 4))
    level = (inner_r[1] + inner_l[1]) / 2
    y0, y1 = int(level - BRIDGE_SPAN[0] * SCALE), int(np.ceil(level + BRIDGE_SPAN[1] * SCALE))
    if x1 - x0 < 2 or y0 < 0 or y1 > size[1] or x0 < 0 or x1 > size[0]:
        return False
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LINE, LINE))
    on = _lines(grey, disc, LINE_GREY)
    span = on[y0:y1, x0:x1]
    if span.any(axis=0).mean() < BRIDGE_COLUMNS:
        return False
    # One piece across the span, reaching past it toward both rims.
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(on.astype(np.uint8), np.ones((3, 3), np.uint8)), connectivity=8
    )
    pieces = np.unique(labels[y0:y1, x0:x1][span])
    return bool(stats[pieces, cv2.CC_STAT_WIDTH].max() >= BRIDGE_WIDTH * SCALE)


@dataclasses.dataclass(frozen=True)
class Rim:
    """A rim's line past an eye, in the picture's pixels: its centre row at column x is
    ``a + b x + c x**2``, from column ``x0`` to ``x1``, ``half`` px to either side."""

    a: float
    b: float
    c: float
    x0: float
    x1: float
    half: float

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The line at the picture's points (``x``, ``y``, arrays of one shape): float32,
        1 on it, fading to 0 over a pixel past it."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        centre = self.a + self.b * x + self.c * x * x
        across = np.clip(self.half + 1 - np.abs(y - centre), 0.0, 1.0)
        along = np.clip(np.minimum(x - self.x0, self.x1 - x) + 1, 0.0, 1.0)
        return (across * along).astype(np.float32)

    def in_picture(self, fx: float, fy: float, origin: tuple[int, int]) -> Rim:
        """This rim, found in a box whose top-left pixel is at ``origin`` of the picture
        and that was resized by ``fx``, ``fy`` (1: as it is), in the picture's pixels."""
        dx, dy = (fx - 1) / 2, (fy - 1) / 2  # pixel centres: u = fx x + dx, v = fy y + dy
        # In the box: fy y + dy = a' + b' u + c' u^2; then x -> x - ox, y -> y - oy.
        a = (self.a + self.b * dx + self.c * dx * dx - dy) / fy
        b = (self.b + 2 * self.c * dx) * fx / fy
        c = self.c * fx * fx / fy
        ox, oy = origin
        return Rim(
            a=float(a - b * ox + c * ox * ox + oy),
            b=float(b - 2 * c * ox),
            c=float(c),
            x0=(self.x0 - dx) / fx + ox,
            x1=(self.x1 - dx) / fx + ox,
            half=self.half / fy,
        )


def find_rim(
    grey: np.ndarray, origin: tuple[int, int], width: float, opening: np.ndarray, lashes: np.ndarray
) -> Rim | None:
    """The rim across ``grey`` (uint8, a box of the picture around an eye ``width`` px
    wide, its top-left pixel at ``origin``), or None: thin, long, roughly level line
    structure outside the eye's ``opening``, along one smooth curve fitted clear of its
    ``lashes`` (bool masks of the box: the lash line is no rim, though a rim may cross
    it)."""
    import cv2

    fx = fy = 1.0
    if width > RIM_WIDTH:  # a large eye: looked for at ``RIM_WIDTH``
        factor = RIM_WIDTH / width
        size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
        fx, fy = size[0] / grey.shape[1], size[1] / grey.shape[0]
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        opening, lashes = (
            cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            for mask in (opening, lashes)
        )
        width = RIM_WIDTH
    rim = _rim_in_box(grey, width, opening, lashes)
    return None if rim is None else rim.in_picture(fx, fy, origin)


def _rim_in_box(grey: np.ndarray, width: float, opening: np.ndarray, lashes: np.ndarray) -> Rim | None:
    """``find_rim`` in the box's own pixels."""
    import cv2

    h, w = grey.shape[:2]
    tall = max(3, int(RIM_THIN * width) | 1)
    on = _lines(grey, np.ones((tall, 1), np.uint8), RIM_GREY) & ~opening
    # Pieces joined along the line (a faint rim breaks into dashes), long enough.
    joined = cv2.dilate(on.astype(np.uint8), np.ones((1, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    long = np.flatnonzero(stats[:, cv2.CC_STAT_WIDTH] >= RIM_ACROSS * w)
    rim = np.isin(labels, long[long > 0]) & on
    ys, xs = np.nonzero(rim & ~lashes)
    if len(np.unique(xs)) < RIM_COLUMNS * w:
        return None
    if len(xs) > RIM_PIXELS:  # (evenly thinned: the lines tried below cost rows^2 x pixels)
        keep = np.linspace(0, len(xs) - 1, RIM_PIXELS).astype(int)
        ys, xs = ys[keep], xs[keep]
    # The straight line with pixels near it in the most columns (each column's pixels
    # counting as one), by its rows at the box's sides; then parabolas fitted to the
    # pixels near the line, then near the curve.
    per_column = 1.0 / np.bincount(xs, minlength=w)[xs]
    t = xs / max(w - 1, 1)
    rows = np.arange(h, dtype=np.float64)
    left, right = np.meshgrid(rows, rows, indexing="ij")
    left, right = left.ravel(), right.ravel()
    seed = max(RIM_NEAR, RIM_SEED * width)
    near = np.abs(ys[None, :] - (left[:, None] + (right - left)[:, None] * t[None, :])) <= seed
    best = int(np.argmax(near @ per_column))
    chosen = near[best]
    scale = float(max(w - 1, 1))
    for tolerance in (max(RIM_NEAR, seed / 2), RIM_NEAR, RIM_NEAR):
        if len(np.unique(xs[chosen])) < RIM_COLUMNS * w:
            return None
        c, b, a = warp.parabola(xs[chosen] / scale, ys[chosen].astype(np.float64))
        c, b = c / scale**2, b / scale
        chosen = np.abs(ys - (a + b * xs + c * xs * xs)) <= tolerance
    if len(np.unique(xs[chosen])) < RIM_COLUMNS * w:
        return None
    # The rim's line about the curve (dark and light: its shadow, its shine), and how far
    # along it goes (through the lash line too), from the rim's pixels near the curve.
    all_ys, all_xs = np.nonzero(rim)
    off = all_ys - (a + b * all_xs + c * all_xs * all_xs)
    close = np.abs(off) <= RIM_NEAR + RIM_SPREAD
    low, high = np.percentile(off[close], [5, 95])
    a += (low + high) / 2
    columns = np.zeros(w + 2, bool)
    columns[all_xs[close] + 1] = True
    # Runs of columns with the rim, gaps of a few columns bridged; the run holding the fit.
    runs = np.flatnonzero(np.diff(columns.astype(np.int8)))
    starts, ends = runs[::2], runs[1::2]  # [start, end) in box columns
    x0, x1 = int(xs[chosen].min()), int(xs[chosen].max())
    for start, end in zip(starts[::-1], ends[::-1], strict=True):  # leftward
        if start <= x0 <= end - 1 + RIM_GAP:
            x0 = int(start)
    for start, end in zip(starts, ends, strict=True):  # rightward
        if start - RIM_GAP <= x1 <= end - 1:
            x1 = int(end) - 1
    return Rim(
        a=float(a), b=float(b), c=float(c), x0=float(x0), x1=float(x1), half=float(high - low) / 2 + 0.5
    )


def _lines(grey: np.ndarray, element: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """Where ``grey`` holds line structure thinner than ``element``, dark or light,
    standing out by ``levels`` (grey levels, times the median)."""
    import cv2

    line = np.maximum(
        cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, element), cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, element)
    )
    return line > max(levels[0], levels[1] * float(np.median(line)))
