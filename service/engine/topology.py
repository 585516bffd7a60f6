"""Fixed index sets and triangles of MediaPipe's 478-point face mesh.

The mesh topology is MediaPipe's own tessellation (shipped as an edge list with
``mediapipe.solutions``); the triangles are recovered from it once. The mesh has holes at
the eyes and the mouth, which the warp fills with dedicated regions (eyeballs move with
the head, the mouth shows an interior).
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import numpy as np

#: Points that move with the skull, not with expressions: eye corners, nose bridge and
#: tip, forehead, temples. Used to fit the rigid head pose.
STABLE = np.array(
    [
        33,
        133,
        362,
        263,
        168,
        6,
        197,
        195,
        5,
        4,
        1,
        10,
        151,
        9,
        8,
        234,
        454,
        127,
        356,
        93,
        323,
        108,
        337,
        69,
        299,
    ],
    dtype=np.int32,
)

#: Eye contours as (upper lid, lower lid) point pairs, inner to outer, plus the corners.
#: "right"/"left" are the subject's: the right eye is on the image's left.
RIGHT_EYE_UPPER = np.array([173, 157, 158, 159, 160, 161, 246], dtype=np.int32)
RIGHT_EYE_LOWER = np.array([155, 154, 153, 145, 144, 163, 7], dtype=np.int32)
RIGHT_EYE_CORNERS = (133, 33)
LEFT_EYE_UPPER = np.array([398, 384, 385, 386, 387, 388, 466], dtype=np.int32)
LEFT_EYE_LOWER = np.array([382, 381, 380, 374, 373, 390, 249], dtype=np.int32)
LEFT_EYE_CORNERS = (362, 263)
RIGHT_IRIS = np.array([468, 469, 470, 471, 472], dtype=np.int32)  # centre first
LEFT_IRIS = np.array([473, 474, 475, 476, 477], dtype=np.int32)

#: Closed polygons (in order) of the eye openings and the inner lips: the mesh's holes.
RIGHT_EYE_RING = np.array(
    [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7], dtype=np.int32
)
LEFT_EYE_RING = np.array(
    [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249], dtype=np.int32
)


class Eye(NamedTuple):
    """One eye's landmark indices: its opening (``ring``), lids, corners (inner, outer)
    and iris (centre first)."""

    ring: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    corners: tuple[int, int]
    iris: np.ndarray


RIGHT_EYE = Eye(RIGHT_EYE_RING, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_CORNERS, RIGHT_IRIS)
LEFT_EYE = Eye(LEFT_EYE_RING, LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_EYE_CORNERS, LEFT_IRIS)
#: Both eyes, the subject's right first (the order every per-eye pair follows).
EYES = (RIGHT_EYE, LEFT_EYE)

INNER_LIPS = np.array(
    [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95],
    dtype=np.int32,
)
MOUTH_CORNERS = (78, 308)
#: Inner-lip (upper, lower) pairs across the opening, every one between the corners,
#: left to right.
INNER_LIP_PAIRS = np.array(
    [[191, 95], [80, 88], [81, 178], [82, 87], [13, 14], [312, 317], [311, 402], [310, 318], [415, 324]],
    dtype=np.int32,
)
#: The five in the middle, away from the corners: how far the lips are apart.
MOUTH_PAIRS = INNER_LIP_PAIRS[2:7]
#: The corners of the lips' outer edge (how wide the mouth is).
MOUTH_OUTER_CORNERS = (61, 291)
#: The middle of the upper inner lip.
UPPER_INNER_LIP_MIDDLE = (82, 13, 312)
OUTER_LIPS = np.array(
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146],
    dtype=np.int32,
)
#: The lower half of the lips' outer edge, from the right corner's side to the left's
#: (``OUTER_LIPS`` runs over the top first).
LOWER_OUTER_LIP = OUTER_LIPS[11:][::-1].copy()
#: The mesh's two rings inside the lips, between the corners, in the order ``OUTER_LIPS``
#: and ``INNER_LIPS`` run in step (without their corners, at 0 and 10): the outer one (on
#: every face measured, at about 0.6 of the lip's thickness out from its inner edge),
#: then the inner one (about 0.25).
LIP_RINGS = np.array(
    [
        [184, 74, 73, 72, 11, 302, 303, 304, 408, 307, 320, 404, 315, 16, 85, 180, 90, 77],
        [183, 42, 41, 38, 12, 268, 271, 272, 407, 325, 319, 403, 316, 15, 86, 179, 89, 96],
    ],
    dtype=np.int32,
)
#: Each lip's columns across its thickness, every one between the corners: the outer
#: edge, the two rings inside the lip and the inner edge.
LIP_COLUMNS = np.column_stack(
    [np.delete(OUTER_LIPS, [0, 10]), *LIP_RINGS, np.delete(INNER_LIPS, [0, 10])]
).astype(np.int32)
#: Each lip's (outer edge, inner edge) pairs across its thickness (``LIP_COLUMNS``' ends).
LIP_THICKNESS_PAIRS = LIP_COLUMNS[:, [0, 3]].copy()
#: Both eyebrows (upper and lower edges, from the inner end out).
BROWS = np.array(
    [107, 66, 105, 63, 70, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300, 285, 295, 282, 283, 276],
    dtype=np.int32,
)

#: Face outline, clockwise from the top of the forehead.
FACE_OVAL = np.array(
    [
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ],
    dtype=np.int32,
)
CHIN = 152
FOREHEAD = 10
NOSE_TIP = 1

#: Cheek patches used to measure skin colour (for colour-matching the mouth interior).
CHEEKS = np.array([50, 101, 118, 280, 330, 347, 205, 425], dtype=np.int32)


@functools.cache
def _neighbours() -> dict[int, set[int]]:
    """Each of the 468 face points' neighbours along the mesh's edges."""
    from mediapipe.python.solutions import face_mesh_connections

    neighbours: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in face_mesh_connections.FACEMESH_TESSELATION:
        neighbours[a].add(b)
        neighbours[b].add(a)
    return dict(neighbours)  # cached: a plain dict, so a lookup never adds to it


@functools.cache
def face_triangles() -> np.ndarray:
    """The mesh triangles (K, 3) of the 468 face points, recovered from the edge list.

    Every 3-cycle of the edge graph is a face of the mesh except a couple of "separating"
    cycles that enclose a vertex; those are recognised because two of their edges are
    shared by more than two cycles, and dropped.
    """
    from mediapipe.python.solutions import face_mesh_connections

    edges = face_mesh_connections.FACEMESH_TESSELATION
    neighbours = _neighbours()
    cycles = set()
    for a, b in edges:
        for c in neighbours[a] & neighbours[b]:
            cycles.add(tuple(sorted((a, b, c))))
    edge_use: collections.Counter[tuple[int, int]] = collections.Counter()
    for a, b, c in cycles:
        edge_use.update([(a, b), (a, c), (b, c)])
    triangles = [
        t
        for t in sorted(cycles)
        if sum(edge_use[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2]))) < 2
    ]
    return np.array(triangles, dtype=np.int32)


@functools.cache
def eye_surround(eye_index: int) -> np.ndarray:
    """The mesh points one triangle out from eye ``eye_index``'s opening (0: right, 1:
    left): the ring just beyond its lids, in index order."""
    ring = {int(i) for i in EYES[eye_index].ring}
    touching = {int(v) for t in face_triangles() if ring & {int(v) for v in t} for v in t}
    around = np.array(sorted(touching - ring), dtype=np.int32)
    around.setflags(write=False)  # cached: shared by every caller
    return around


@functools.cache
def mouth_triangles() -> np.ndarray:
    """The face triangles (K, 3) of the lips and the ring just around them: every
    triangle with a corner on the lips (their inner and outer edges and the points
    between, found by walking the mesh from the inner edge without crossing the outer)."""
    outer = {int(i) for i in OUTER_LIPS}
    neighbours = _neighbours()
    lips = {int(i) for i in INNER_LIPS}
    frontier = list(lips)
    while frontier:
        point = frontier.pop()
        for other in neighbours[point] - lips:
            lips.add(other)
            if other not in outer:
                frontier.append(other)
    triangles = np.array([t for t in face_triangles() if lips & {int(v) for v in t}], dtype=np.int32)
    triangles.setflags(write=False)  # cached: shared by every caller
    return triangles
