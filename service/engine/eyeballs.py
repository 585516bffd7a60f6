"""The eyeballs, turned by the performer's gaze (``Eyeballs``): each eye's opening in the
picture carried out past its lids once, so that a shifted eyeball shows eye, not lid
line and skin, its inner corner held in place.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from service.engine import topology, warp

#: How far past each eye's opening its eyeball picture reaches (``Eyeballs``), in eye
#: widths: beyond the gaze's greatest shift (``retarget.GAZE_MAX``).
EYEBALL_MARGIN = 0.3
#: The eyeball's shift by the gaze (px) over which its carried-out picture fades in.
EYEBALL_SHIFT = (0.5, 2.0)
#: How much of an eye's width, from its inner corner, stays put as the eyeball turns
#: (``_anchored``): the caruncle.
CARUNCLE = 0.12
#: Where each eye's corners are in its opening's outline (``topology.Eye.ring``).
_RING_CORNERS = [[list(eye.ring).index(c) for c in eye.corners] for eye in topology.EYES]


def _carry_out(patch: np.ndarray, inside: np.ndarray, quick: bool) -> np.ndarray:
    """``patch`` carried outward from inside ``inside`` (uint8 mask, 255 inside).

    Once per picture, by Telea's inpainting (about 3 ms an eye). ``quick`` (a character
    video, whose every frame needs its own): every pixel outside takes the colour of the
    nearest one inside, softened by a 5 px blur, about 0.3 ms an eye; next to the
    opening, where a turned eyeball looks, the two read much the same, and the judge
    reads a still's eye corners a little differently with it (bench/fidelity).
    """
    import cv2

    if not quick:
        return cv2.inpaint(patch, cv2.bitwise_not(inside), 3, cv2.INPAINT_TELEA)
    outside = cv2.bitwise_not(inside)
    _, nearest = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # Each pixel inside is its own label, numbered from 1 in raster order.
    carried = patch[inside > 0][nearest - 1]
    soft = cv2.GaussianBlur(carried, (5, 5), 0)
    return np.where(inside[..., None] > 0, patch, soft)


class _TurnedEye(NamedTuple):
    """What ``Eyeballs`` keeps of one eye once the gaze first turns it."""

    ball: np.ndarray  # the picture around the eye, its opening carried out past its lids
    origin: np.ndarray  # where ``ball`` lies on the canvas
    inner: np.ndarray  # the inner corner on the canvas
    along: np.ndarray  # unit vector from the inner corner to the outer
    width: float  # between the corners, px
    edge: float  # the iris's inner edge, in eye widths from the inner corner


class Eyeballs:
    """Each eye's opening in the picture, carried out past its lids, for the eyeball to
    turn in.

    The warp shows an eye's opening from the picture shifted with the performer's gaze
    (``Rig.eyeballs``). Shifted far, the opening showed the picture's own lid line
    inside the eye, as a dark outline, and past it the skin, where the lashes should
    have been. Here the opening's own pixels, less its edge (the lid line), are carried
    outward by inpainting from inside only, and a shifted eyeball is drawn from this
    instead, over its whole opening, its inner corner held in place (``_anchored``). An
    eye at rest is left as the warp draws it, lid line and all.
    """

    def __init__(self, canvas: np.ndarray, points: np.ndarray, quick: bool = False) -> None:
        """``canvas`` and ``points`` are read when an eye is first drawn shifted, so they
        must not change after (a character frame's do not); ``quick``: a character
        video's frame, carried out the cheaper way (``_carry_out``)."""
        self._canvas, self._points, self._quick = canvas, points, quick
        self._ends = [points[list(eye.corners), :2].astype(np.float64) for eye in topology.EYES]
        self._carried: dict[int, _TurnedEye | None] = {}

    def _carried_out(self, index: int) -> _TurnedEye | None:
        """Eye ``index`` carried out, made the first time the gaze turns it: a character
        video's frame is used once, and one whose eyes stay at rest never needs it. None:
        pictured shut."""
        if index in self._carried:
            return self._carried[index]
        import cv2

        h, w = self._canvas.shape[:2]
        ring, ends = self._points[topology.EYES[index].ring, :2].astype(np.float64), self._ends[index]
        reach = EYEBALL_MARGIN * float(np.linalg.norm(ends[1] - ends[0])) + 2
        box = warp.Roi.around(ring, reach, w, h, 1)
        patch = np.ascontiguousarray(self._canvas[box.slices])
        inside = warp.polygon_mask(patch.shape, ring, (box.x0, box.y0), antialiased=False)
        inside = cv2.erode(inside, np.ones((5, 5), np.uint8)) if inside.size else inside
        kept = None  # an eye pictured shut: nothing to carry out
        if np.count_nonzero(inside) >= 12:
            inner, outer = ends
            width = float(np.linalg.norm(outer - inner)) or 1.0
            along = (outer - inner) / width
            iris = self._points[topology.EYES[index].iris[1:], :2].astype(np.float64)
            kept = _TurnedEye(
                ball=_carry_out(patch, inside, self._quick),
                origin=np.array([box.x0, box.y0], dtype=np.float64),
                inner=inner,
                along=along,
                width=width,
                edge=float(((iris - inner) @ along).min()) / width,
            )
        self._carried[index] = kept
        return kept

    def paint(self, out: np.ndarray, eyes: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Draw each shifted eyeball into its opening in ``out`` (in place), its inner
        corner held where it is (``_anchored``); ``eyes``: each eye's opening and dst ->
        src affine (``Rig.eyeballs``)."""
        import cv2

        h, w = out.shape[:2]
        for index, (ends, corners, (poly, affine)) in enumerate(
            zip(self._ends, _RING_CORNERS, eyes, strict=True)
        ):
            lin = affine[:, :2]
            # How far the gaze shifts the eyeball: where the middle of its corners samples.
            middle = poly[corners].mean(axis=0)
            moved = ends.mean(axis=0) - (lin @ middle + affine[:, 2])
            weight = float(warp.smoothstep(float(np.linalg.norm(moved)), *EYEBALL_SHIFT))
            if weight <= 0.0:
                continue
            box = warp.Roi.around(poly, 1, w, h, 1)
            kept = self._carried_out(index)
            if kept is None or box.x1 - box.x0 < 2 or box.y1 - box.y0 < 2:
                continue
            xs = np.arange(box.x0, box.x1, dtype=np.float32)[None, :]
            ys = np.arange(box.y0, box.y1, dtype=np.float32)[:, None]
            map_x, map_y = _anchored(kept, lin, affine[:, 2] + moved, xs, ys, moved)
            pixels = cv2.remap(kept.ball, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            mask = warp.polygon_mask(pixels.shape[:2], poly, (box.x0, box.y0))
            alpha = mask.astype(np.float32)[..., None] * np.float32(weight / 255)
            region = out[box.slices]
            region[:] = (pixels * alpha + region * (1 - alpha) + 0.5).astype(np.uint8)


def _anchored(
    eye: _TurnedEye, lin: np.ndarray, offset: np.ndarray, xs: np.ndarray, ys: np.ndarray, moved: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where in ``eye``'s carried-out picture each pixel (``xs`` (1, W), ``ys`` (H, 1))
    samples (maps for ``cv2.remap``), given the dst -> src affine of the eye at rest on
    the canvas, ``lin`` and ``offset``, and how far the gaze moves the sampling
    (``moved``, px).

    The eyeball turns; the eye's inner corner (the pink caruncle, ``CARUNCLE`` of its
    width) does not. Moved whole with the eyeball, the caruncle slid across the eye and
    left a grey-mauve wedge at the corner, its own edge carried out. So the corner
    samples where it is at rest; the iris and everything beyond it toward the outer
    corner move with the gaze (past the opening, from its carried-out picture); and the
    white between the caruncle and the iris stretches or squeezes between them. Across
    the eye the gaze's shift grows over that same white. An iris turned into the corner
    covers the caruncle rather than being cut by it.
    """
    along, width, edge = eye.along, eye.width, eye.edge
    shift = float(moved @ along) / width  # how far the eyeball moves, in eye widths
    across = moved - along * (moved @ along)
    seen = edge + shift  # where the iris's inner edge shows
    # Turned toward the corner, the iris covers the caruncle; and the corner is never so
    # wide that the white it stretches is narrower than itself (a drawn eye's iris may
    # reach close to the corner).
    corner = max(0.0, min(CARUNCLE, seen, edge / 2))
    # Each pixel's place along the eye at rest (0 at the inner corner, 1 at the outer).
    slope = lin.T @ along / width
    t = slope[0] * xs + slope[1] * ys + np.float32((offset - eye.inner) @ along / width)
    if seen > corner + 1e-3:
        span = np.minimum(np.maximum((t - corner) * np.float32(1 / (seen - corner)), 0), 1)
        stretched = corner + span * np.float32(edge - corner) - t
        along_shift = np.where(t < seen, stretched, np.float32(-shift))
    else:
        span = (t > corner).astype(np.float32)
        along_shift = span * np.float32(-shift)
    along_shift = np.where(t <= corner, np.float32(0), along_shift) * np.float32(width)
    maps = []
    for k in range(2):
        rest = lin[k, 0] * xs + lin[k, 1] * ys + np.float32(offset[k] - eye.origin[k])
        maps.append(
            (rest + along_shift * np.float32(along[k]) - span * np.float32(across[k])).astype(np.float32)
        )
    return maps[0], maps[1]
