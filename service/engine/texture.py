"""The clean plate's texture: what a still's moving head uncovers, filled from the scene.

``fill`` fills a hole in a picture with the picture's own texture, the way content-aware
fills do (Wexler et al. 2007, with Barnes et al.'s PatchMatch for the search): at a
small working size, every pixel near the hole is matched to a patch of the scene
outside it and the hole is repainted from the matches, repeatedly, coarse to fine. The
matches found at the working size then copy the picture's full-resolution pixels into
the hole, so grass stays grass and a wall's grain stays sharp. The coarsest level starts
from a smooth fill of the hole (the clean plate's own, OpenCV's Telea).

The compiled loops are in ``raster``. The seed is fixed: the same picture always gets the
same fill.
"""

from __future__ import annotations

import numpy as np

from service.engine import raster

#: The search works on the picture reduced to about this many pixels on its longer side
#: (6 px cells for 720 rows), then on coarser levels, each half the last, down to
#: ``LEVELS`` in all. About 0.1 s for the photo character; at 260 px, 0.6 s.
WORKING = 140
#: The coarsest levels are what make the fill coherent: with a few dozen patches outside
#: the hole to choose from, the whole hole takes its layout from a few of them (the
#: photo's grassy slope carries its diagonal bands on through it). Dropping a level left
#: for lack of sources (the photo's coarsest has 13) made the slope a patchwork.
LEVELS = 3
#: Patch radius (7 x 7 patches), search-and-repaint rounds per level, passes per search.
RADIUS = 3
ROUNDS = 3
PASSES = 3
SEED = 1


def fill(image: np.ndarray, hole: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """``image`` (H, W, 3) uint8 with the ``hole`` (H, W) bool pixels filled from the rest
    of it, or None where no patch of the working size lies wholly outside the hole.
    ``start`` (H, W, 3): a smooth fill of the hole (the clean plate's), which the
    coarsest level starts from."""
    import cv2

    h, w = hole.shape
    image, hole = np.ascontiguousarray(image), np.ascontiguousarray(hole)
    if not hole.any():
        return image.copy()
    step = max(1, -(-max(h, w) // WORKING))
    levels = []
    for level in range(LEVELS):
        cell = step << level
        small, gap = _reduced(image, hole, cell)
        domain = cv2.dilate(gap.view(np.uint8), np.ones((2 * RADIUS + 1,) * 2, np.uint8)) > 0
        source = _sources(domain)
        if not source.any():
            break
        levels.append((small, gap, domain, source))
    if not levels:
        return None
    nearest: np.ndarray | None = None
    estimate: np.ndarray | None = None
    for small, gap, domain, source in reversed(levels):
        if nearest is None:
            estimate, _ = _reduced(start, hole, step << (len(levels) - 1))
            nearest = _anywhere(domain, source, SEED)
        else:
            nearest = _finer(nearest, domain, source, SEED + len(levels))
        assert estimate is not None
        up = cv2.resize(estimate, (gap.shape[1], gap.shape[0]), interpolation=cv2.INTER_LINEAR)
        small[gap] = up[gap]
        for round_ in range(ROUNDS):
            raster.patch_search(small, domain, source, nearest, RADIUS, PASSES, SEED + round_)
            raster.patch_vote(small, gap, domain, nearest, RADIUS)
        estimate = small
    assert nearest is not None
    out = image.copy()
    raster.copy_matched(image, out, hole, nearest, step)
    return out


def _reduced(image: np.ndarray, hole: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` averaged over ``cell`` x ``cell`` cells (float32), and which cells touch
    the hole; a last partial row or column of cells is filled out by repeating the edge."""
    import cv2

    h, w = hole.shape
    rows, cols = -(-h // cell), -(-w // cell)
    pad = ((0, rows * cell - h), (0, cols * cell - w))
    padded = np.pad(image, pad + ((0, 0),), mode="edge")
    small = cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    gap = np.pad(hole, pad, mode="edge").reshape(rows, cell, cols, cell).any(axis=(1, 3))
    return small, gap


def _sources(domain: np.ndarray) -> np.ndarray:
    """The pixels whose whole patch lies inside the picture and outside the hole (off
    the ``domain``: the hole grown by a patch's radius)."""
    inside = np.zeros_like(domain)
    inside[RADIUS : domain.shape[0] - RADIUS, RADIUS : domain.shape[1] - RADIUS] = True
    return inside & ~domain


def _anywhere(domain: np.ndarray, source: np.ndarray, seed: int) -> np.ndarray:
    """Random matches (from ``source``) for the ``domain`` pixels: the search's start."""
    ys, xs = np.nonzero(source)
    nearest = np.zeros(domain.shape + (2,), np.int64)
    pick = np.random.default_rng(seed).integers(0, len(ys), int(domain.sum()))
    nearest[domain] = np.stack([ys[pick], xs[pick]], axis=1)
    return nearest


def _finer(coarse: np.ndarray, domain: np.ndarray, source: np.ndarray, seed: int) -> np.ndarray:
    """The coarser level's matches carried to this level's twice-as-fine grid (each cell
    its parent's match, shifted by its place in the parent); those that land off a
    source start from a random one."""
    rows, cols = domain.shape
    yy, xx = np.mgrid[:rows, :cols]
    nearest = np.empty((rows, cols, 2), np.int64)
    nearest[..., 0] = np.minimum(coarse[yy // 2, xx // 2, 0] * 2 + yy % 2, rows - 1)
    nearest[..., 1] = np.minimum(coarse[yy // 2, xx // 2, 1] * 2 + xx % 2, cols - 1)
    lost = domain & ~source[nearest[..., 0], nearest[..., 1]]
    if lost.any():
        nearest[lost] = _anywhere(lost, source, seed)[lost]
    return nearest
