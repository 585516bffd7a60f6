"""Drawn eyes larger than the eye FaceMesh finds: fit the eye contour to the drawing.

FaceMesh was trained on real faces. On a stylised character with big drawn eyes it puts
the eye contour where a real eye of that face would be: inside the drawing, with white
and iris showing beyond it. The lids then close only over the part inside the contour,
and the band between the contour and the drawn lid — white, iris, lashes — slides down
with the lid, so the eye narrows but never shuts.

A drawn eye announces itself below the lower contour: bright white, then, within a short
distance, the dark line of the drawn lower lid. Real eyes show nothing like it there
(measured on the shared photo, the character video and three performers: at most a
0.15 drop against 0.41-0.68 on the cartoon). Only for such an eye is the contour moved
out: the lower lid onto the drawn lid line, the corners onto the drawn corners, the
upper lid to the bottom of the drawn lashes (so they come down with the lid), each lid
as one smooth arc; the face mesh around the eye follows with a smooth fall-off, so the
rings of points beyond the contour stay outside the drawing and carry skin, not white,
when the lids close. Real eyes are left as they are; should dark make-up under a real
eye pass for a drawn lid, its upper lid, with no white between contour and lashes,
still stays.

The lids drawn as such an eye narrows and shuts, and the lids of real eyes, are
``lids.ShutEyes``; it measures each eye's lash line with the scan-line helpers here
(``scan``, ``dark_end``, ``skin_below``).
"""

from __future__ import annotations

import numpy as np

from service.engine import retarget, topology

#: Share of an eye's lower contour points that must see a drawn lid for it to count.
DRAWN_SHARE = 0.5
#: A drawn lid: a fall in lightness of at least this share of the skin's lightness,
#: from white at least ``BRIGHT`` times as light as the skin...
DROP = 0.3
BRIGHT = 0.85
#: ...within this far (eye widths) beyond the contour, over at most ``LINE`` eye widths.
REACH = 0.22
LINE = 0.1
#: Lightness (share of the skin's) below which a pixel is lash or lid line.
DARK = 0.6
#: The face mesh around a moved contour follows it out to this far (eye widths).
FALLOFF = 0.6
#: The largest move of any contour point (eye widths).
MAX_MOVE = 0.3

_STEP = 0.5  # px between samples along a scan line


def scan(light: np.ndarray, start: np.ndarray, direction: np.ndarray, length: float) -> np.ndarray:
    """Lightness sampled every ``_STEP`` px from ``start`` along unit ``direction``."""
    import cv2

    steps = np.arange(0.0, max(length, _STEP), _STEP)
    xy = (start + steps[:, None] * direction).astype(np.float32)
    return cv2.remap(light, xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]


def _drawn_lid(profile: np.ndarray, width: float, skin: float) -> float | None:
    """Distance (px) to the darkest point of a drawn lid line entered from white within
    ``REACH`` eye widths of the profile's start, or None if there is none."""
    span = max(2, int(LINE * width / _STEP))
    reach = int(REACH * width / _STEP)
    best, where = DROP * skin, None
    for j in range(min(reach, len(profile))):
        if profile[j] < BRIGHT * skin:
            continue
        run = profile[j : j + span]
        k = int(np.argmin(run))
        if profile[j] - run[k] >= best:
            best, where = profile[j] - run[k], (j + k) * _STEP
    return where


def dark_end(profile: np.ndarray, skin: float) -> tuple[float, float] | None:
    """Where the first dark run along the profile (lashes, possibly over the iris) starts
    and ends (px), or None if the profile has no dark pixel."""
    dark = profile < DARK * skin
    if not dark.any():
        return None
    first = int(np.argmax(dark))
    after = np.nonzero(~dark[first:])[0]
    last = first + (int(after[0]) if len(after) else len(dark) - first)
    return first * _STEP, last * _STEP


def _found(values: list[float | None], limit: float) -> np.ndarray:
    """Distances found along scan lines, clipped to 0..``limit``; NaN where none was."""
    return np.clip(np.array([np.nan if v is None else v for v in values], dtype=np.float64), 0.0, limit)


def contour_moves(image: np.ndarray, points: np.ndarray) -> dict[int, np.ndarray]:
    """For each eye drawn larger than its FaceMesh contour, how far (px, x/y) each of its
    contour points should move to lie on the drawing; empty for real eyes."""
    import cv2

    light = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)[..., 0].astype(np.float32)
    moves: dict[int, np.ndarray] = {}
    for eye in topology.EYES:
        moves.update(_eye_moves(light, points, eye))
    return moves


def _eye_moves(light: np.ndarray, points: np.ndarray, eye: topology.Eye) -> dict[int, np.ndarray]:
    """``contour_moves`` for one eye (``light``: the picture's lightness)."""
    _, upper, lower, corners, _ = eye
    inner, outer = points[corners[0], :2].astype(np.float64), points[corners[1], :2].astype(np.float64)
    width = float(np.linalg.norm(outer - inner))
    if width < 8:
        return {}
    along, up = retarget.line_axes(inner, outer)
    down = -up
    skin = skin_below(light, points, eye, width, down)
    if skin <= 0:
        return {}
    reach = (REACH + LINE) * width
    hits = [_drawn_lid(scan(light, points[i, :2], down, reach), width, skin) for i in lower]
    if sum(d is not None for d in hits) < DRAWN_SHARE * len(lower):
        return {}
    limit = MAX_MOVE * width
    lids = [(lower, _found(hits, limit))]
    # Upper lid: to the top of the first dark run (the drawn lashes, which may lie over
    # the iris), less the lashes' own thickness where it can be seen (white below
    # them): the lashes then come down with the lid, as a drawn closed eye shows them.
    runs = [dark_end(scan(light, points[i, :2], -down, reach), skin) for i in upper]
    # A drawn eye shows white between its upper contour and the lashes somewhere; where
    # no point does (the contour already on the lashes, as on a real eye under dark
    # lower make-up), the upper lid stays, and holds the mesh above it in place.
    seen = [end - start for start, end in (run for run in runs if run is not None) if start > 0]
    if seen:
        lash = float(np.median(seen))
        lids.append((upper, -_found([None if run is None else run[1] - lash for run in runs], limit)))
    # Corners: along the eye's axis, onto the drawn corner if a drawn lid line is there.
    ends = []
    for index, outward in ((corners[0], -along), (corners[1], along)):
        hit = _drawn_lid(scan(light, points[index, :2], outward, reach), width, skin)
        ends.append(0.0 if hit is None else min(hit, limit))
    moves = {int(corners[0]): -along * ends[0], int(corners[1]): along * ends[1]}
    moves.update({int(i): np.zeros(2) for i in upper})  # stays unless fitted below
    # The drawn lids are smooth arcs: each lid is one parabola (across the eye, as a
    # function of the distance along it) through the moved corners and the points found
    # on it; every point of the lid, found or not, goes onto it.
    ends_rel = np.array([-along * ends[0], outer - inner + along * ends[1]])
    for lid, offset in lids:
        rel = points[lid, :2] - inner
        found = ~np.isnan(offset)
        coeffs = np.polyfit(
            np.concatenate([rel[found] @ along, ends_rel @ along]),
            np.concatenate([rel[found] @ down + offset[found], ends_rel @ down]),
            2,
            w=np.concatenate([np.ones(int(found.sum())), np.full(2, 10.0)]),  # the corners hold
        )
        shift = np.clip(np.polyval(coeffs, rel @ along) - rel @ down, -limit, limit)
        moves.update({int(i): down * d for i, d in zip(lid, shift, strict=True)})
    return moves


def fit_drawn_eyes(
    image: np.ndarray, points: np.ndarray, moves: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """``points`` (478, 3) with the contour of any eye drawn larger than it moved onto the
    drawing, and the face mesh around it following smoothly (a copy; real eyes: equal).
    ``moves``: ``contour_moves(image, points)``, if already known."""
    if moves is None:
        moves = contour_moves(image, points)
    out = points.copy()
    if not moves:
        return out
    index = np.array(sorted(moves), dtype=np.int64)
    shift = np.stack([moves[int(i)] for i in index])
    anchors = points[index, :2].astype(np.float64)
    widths = [
        float(np.linalg.norm(points[a, :2] - points[b, :2]))
        for a, b in (eye.corners for eye in topology.EYES)
    ]
    reach = FALLOFF * float(np.mean(widths))
    mesh = np.setdiff1d(np.arange(468), index)
    # Each other mesh point moves by the inverse-distance-weighted moves of the contour
    # points, fading to nothing ``reach`` px from the contour (slope well under 1, so no
    # triangle folds).
    dist = np.linalg.norm(points[mesh, None, :2] - anchors[None], axis=2)
    weights = 1.0 / np.maximum(dist, 1.0) ** 2
    blended = (weights @ shift) / weights.sum(axis=1, keepdims=True)
    fade = np.clip(1.0 - dist.min(axis=1) / reach, 0.0, 1.0) ** 2
    out[mesh, :2] += (blended * fade[:, None]).astype(out.dtype)
    out[index, :2] += shift.astype(out.dtype)
    return out


class DrawnEyes:
    """A character's drawn-eye fit and drawn lids: a still's, or a video's found on its
    first face and carried to each frame (``moves``).

    A drawn eye keeps its shape from frame to frame, while a fit made afresh on every
    frame would follow the drawing's compression noise, and fails on the video's own
    blinks (a shut drawn eye shows no white). The moves are kept in each eye's own axes
    (along it and up across it, in eye widths) and put back on each frame's eyes.
    """

    def __init__(self, image: np.ndarray, points: np.ndarray, moves: dict[int, np.ndarray]) -> None:
        """``moves``: ``contour_moves(image, points)``, not empty."""
        self._fits: list[tuple[int, np.ndarray, np.ndarray]] = []  # eye, indices, local moves
        for k, eye in enumerate(topology.EYES):
            index = np.array(
                [i for i in (*eye.corners, *eye.upper, *eye.lower) if int(i) in moves], dtype=np.int64
            )
            if not len(index):
                continue
            along, up, width = self._axes(points, eye)
            shift = np.stack([moves[int(i)] for i in index])
            self._fits.append((k, index, np.column_stack([shift @ along, shift @ up]) / width))
        #: This frame's landmarks with its drawn eyes fitted (``fit_drawn_eyes``).
        self.points = fit_drawn_eyes(image, points, moves)
        #: Which eyes are drawn (indices into ``topology.EYES``), for their lids
        #: (``lids.ShutEyes``).
        self.eyes = [k for k, _, _ in self._fits]

    @classmethod
    def find(cls, image: np.ndarray, points: np.ndarray) -> DrawnEyes | None:
        """The fit of the drawn eyes of a frame, or None if its eyes are not drawn."""
        moves = contour_moves(image, points)
        return cls(image, points, moves) if moves else None

    @staticmethod
    def _axes(points: np.ndarray, eye: topology.Eye) -> tuple[np.ndarray, np.ndarray, float]:
        inner, outer = (points[c, :2].astype(np.float64) for c in eye.corners)
        along, up = retarget.line_axes(inner, outer)
        return along, up, float(np.linalg.norm(outer - inner)) or 1.0

    def moves(self, points: np.ndarray) -> dict[int, np.ndarray]:
        """The fit's moves (px, x/y) for another frame's landmarks ``points``."""
        out: dict[int, np.ndarray] = {}
        for k, index, local in self._fits:
            along, up, width = self._axes(points, topology.EYES[k])
            shift = (local[:, :1] * along + local[:, 1:] * up) * width
            out.update(zip((int(i) for i in index), shift, strict=True))
        return out


def skin_below(
    light: np.ndarray, points: np.ndarray, eye: topology.Eye, width: float, down: np.ndarray
) -> float:
    """The lightness of the skin just below an eye, for what "light" and "dark" mean on
    this face."""
    below = [scan(light, points[i, :2] + down * 0.3 * width, down, 0.2 * width) for i in eye.lower]
    return float(np.median(np.concatenate(below)))
