"""The character's warp rig: control points around the face mesh and their motion.

Around the 468-point face mesh the rig adds rings that give the rest of the picture a
sensible motion: hair and ears ride rigidly with the head (ring 1 and the upper part of
ring 2), the neck blends from head to torso, shoulders follow the torso (when body
control is on) and the background ring and canvas border stay put. The eye openings move
rigidly with the head (so lids slide over the eyeballs rather than squashing them, and
the pupils can follow the driver's gaze) and the mouth opening is filled separately.

``shapes`` turns one ``TargetFace`` into the painted shapes the ``Warper`` consumes:
background triangles, then the eye and mouth openings, then the face triangles sorted
far-to-near, which is what makes a turned head occlude itself instead of folding.
"""

from __future__ import annotations

import functools

import numpy as np

from service.engine import retarget, topology, warp

RING_SCALES = (1.3, 1.75, 2.7)
#: Smallest margin (px) of the head's detail ROI around the face: at least two coarse
#: warp samples, so the face never reaches the coarse grid (see ``coarse_shapes``).
HEAD_MARGIN_MIN = 8.0
#: How far the picture's own mouth opening (``Rig.own_mouth``) is taken in from its
#: lower lip, in mouth widths: the lip's soft inner edge.
OWN_MOUTH_INSET = 0.04
#: Least opening left of it, in mouth widths, for it to count: lips closed or barely
#: parted show no teeth to keep, and the driver's fill is left whole.
OWN_MOUTH_MIN = 0.04
#: The sharp picture's edges hold the person they cut (``Rig.shapes``): motion away
#: from an edge fades out toward it over this many face heights (from the bottom edge,
#: no further than the chin; from the top, no further than the forehead), and the edge
#: stays put. Moved away from it, the person uncovered what the picture does not show:
#: the warp repeated the edge's last row as streaks (a body lifted from the bottom edge,
#: hair cut by the top one moving down), or, on a picture with bands beside it, showed
#: the band's blur between the person and the edge.
EDGE_HOLD = 0.6


def _eyeball_affine(src_corners: np.ndarray, dst_corners: np.ndarray, scale: float) -> np.ndarray:
    """dst -> src affine taking the dst eye corners onto the src ones; across the eye,
    dst distances shrink by the head's ``scale``."""
    u0, u1 = src_corners[1] - src_corners[0], dst_corners[1] - dst_corners[0]
    n0 = np.array([-u0[1], u0[0]]) / (np.linalg.norm(u0) or 1.0)
    n1 = np.array([-u1[1], u1[0]]) / (np.linalg.norm(u1) or 1.0)
    basis_dst = np.column_stack([u1, n1])
    if abs(warp.det2(basis_dst)) < 1e-9:
        return np.hstack([np.eye(2), (src_corners[0] - dst_corners[0])[:, None]])
    lin = np.column_stack([u0, n0 / scale]) @ warp.inv2(basis_dst)
    return np.hstack([lin, (src_corners[0] - lin @ dst_corners[0])[:, None]])


class _BackgroundMesh:
    """Triangles over the rig's background points, with each one's signed area when
    the triangulation was made."""

    #: A reused triangulation is dropped once a triangle has lost this share of its area
    #: (or flipped): it still tiles the plane, but slivers warp poorly.
    KEEP_AREA = 0.5

    def __init__(self, triangles: np.ndarray, areas: np.ndarray) -> None:
        self.triangles, self.areas = triangles, areas

    @classmethod
    def over(cls, points: np.ndarray, n_inner: int, like: _BackgroundMesh | None) -> _BackgroundMesh:
        """The mesh of ``points`` (the first ``n_inner`` outline the hole): ``like``'s
        triangles if none has flipped or thinned too much on these points, else a new
        Delaunay triangulation (the costliest step of building a rig)."""
        if like is not None:
            areas = warp.signed_areas(points[like.triangles])
            if (areas * np.sign(like.areas) >= cls.KEEP_AREA * np.abs(like.areas)).all():
                return like
        from scipy.spatial import Delaunay

        tri = Delaunay(points).simplices
        tri = tri[~(tri < n_inner).all(axis=1)]
        return cls(tri, warp.signed_areas(points[tri]))


class Rig:
    """Control points and background triangulation for one set of source landmarks."""

    def __init__(
        self,
        source: np.ndarray,
        width: int,
        height: int,
        person_box: tuple[int, int, int, int] | None = None,
        like: Rig | None = None,
        picture: tuple[int, int, int, int] | None = None,
        edges: tuple[bool, bool, bool, bool] | None = None,
    ) -> None:
        """``source`` landmarks (478, 3) on a ``width`` x ``height`` canvas; ``person_box``
        (x0, y0, x1, y1) bounds the person mask, which limits the torso's moving region.
        ``like``: the rig of a neighbouring frame of the same video, whose background
        triangulation is reused while it still fits these points. ``picture`` (x0, y0,
        x1, y1): where the sharp picture is on the canvas (``framing.Window.inner``;
        default: all of it), whose edges hold the person they cut (``EDGE_HOLD``);
        ``edges``: which of them (top, bottom, left, right) cut the person (default:
        ``like``'s, else those the person's box reaches: a video keeps its first face
        frame's, so that a box grazing an edge does not switch the hold on and off from
        frame to frame)."""
        import cv2

        self.source = source.astype(np.float64)
        self.person_box = person_box or (0, 0, width, height)
        self.picture = picture or (0, 0, width, height)
        if edges is None and like is not None:
            edges = like.edges
        if edges is None:
            x0, y0, x1, y1 = self.picture
            px0, py0, px1, py1 = self.person_box
            edges = (py0 <= y0 + 2, py1 >= y1 - 2, px0 <= x0 + 2, px1 >= x1 - 2)
        #: Which of the picture's edges (top, bottom, left, right) cut the person.
        self.edges: tuple[bool, bool, bool, bool] = edges
        self.width, self.height = width, height
        face2 = self.source[:468, :2]
        oval = face2[topology.FACE_OVAL]
        centre = self.source[topology.STABLE, :2].mean(axis=0)
        rings = [centre + (oval - centre) * s for s in RING_SCALES]
        lo = np.minimum(np.vstack([*rings, [[0, 0]]]).min(axis=0), 0) - 8
        hi = np.maximum(np.vstack([*rings, [[width, height]]]).max(axis=0), [width, height]) + 8
        xs, ys = np.linspace(lo[0], hi[0], 7), np.linspace(lo[1], hi[1], 5)
        border = np.array(
            [[x, lo[1]] for x in xs]
            + [[x, hi[1]] for x in xs]
            + [[lo[0], y] for y in ys[1:-1]]
            + [[hi[0], y] for y in ys[1:-1]]
        )
        edge, edge_axes = self._edge_points()
        self.extra_src = np.vstack([*rings, border, edge])
        n_ring = len(topology.FACE_OVAL)
        # Background triangulation over the oval + extra points, without the face interior.
        self._mesh: _BackgroundMesh = _BackgroundMesh.over(
            np.vstack([oval, self.extra_src]), n_ring, None if like is None else like._mesh
        )
        # Re-index into the combined [468 face points, extra points] array.
        index = np.concatenate([topology.FACE_OVAL, 468 + np.arange(len(self.extra_src))])
        self.background = index[self._mesh.triangles].astype(np.int32)
        self.faces = topology.face_triangles()
        self.src_all = np.vstack([face2, self.extra_src])
        chin_y = self.source[topology.CHIN, 1]
        face_h = chin_y - self.source[topology.FOREHEAD, 1]
        # Weight of torso (vs head / background) motion for each extra point, by height.
        extra_y = self.extra_src[:, 1]
        self._torso_w = warp.smoothstep(extra_y, chin_y - 0.1 * face_h, chin_y + 0.5 * face_h)
        self._is_head = np.zeros(len(self.extra_src), dtype=bool)
        self._is_head[: 2 * n_ring] = True  # rings 1-2 belong to the head, ring 3 and border don't
        # Points on the picture's edges within ring 2 slide along their edge with the head
        # (``_edge_points``).
        head = rings[1].astype(np.float32).reshape(-1, 1, 2)
        inside = [cv2.pointPolygonTest(head, (float(x), float(y)), False) >= 0 for x, y in edge]
        sliding = np.array(inside, dtype=bool)
        first_edge = len(self.extra_src) - len(edge)
        self._is_head[first_edge:] = sliding
        # The (extra point, axis) of each sliding edge point's motion across its edge: held.
        self._on_edge = (first_edge + np.flatnonzero(sliding), edge_axes[sliding])
        self.face_height = face_h
        self._hold = self._edge_hold(chin_y, self.source[topology.FOREHEAD, 1], face_h)

    def _edge_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Points along the picture's edges where they lie inside the canvas (a picture
        with bands beside it), so that the warp holds the edge itself (the canvas's own
        edges are held by the border beyond them), and the axis each one is held on (1:
        y, on the top and bottom edges; 0: x).

        Those within the head's ring 2 (a close-up the edge cuts) slide along the edge
        with the head: held still, they sheared the hair between them and the head's
        moving rings into a zigzag along the edge."""
        x0, y0, x1, y1 = self.picture
        points, axes = [], []
        for y, inside in ((y0, y0 > 1), (y1, y1 < self.height - 1)):
            if inside:
                points += [[x, y] for x in np.linspace(x0, x1, 7)]
                axes += [1] * 7
        ys = np.linspace(y0, y1, 5)[1:-1]
        for x, inside in ((x0, x0 > 1), (x1, x1 < self.width - 1)):
            if inside:
                points += [[x, y] for y in ys]
                axes += [0] * len(ys)
        return np.array(points, dtype=np.float64).reshape(-1, 2), np.array(axes, dtype=np.intp)

    def _edge_hold(self, chin_y: float, forehead_y: float, face_h: float) -> np.ndarray:
        """Per extra point, how much of its motion away from the picture's top, bottom,
        left and right edge it keeps (N, 4; 0 at the edge and beyond, 1 from
        ``EDGE_HOLD`` face heights inside), for the edges that cut the person.
        Between forehead and chin nothing is held by the top or bottom edge (the face and
        the hair beside it move whole), and the sides hold only the body below the chin:
        hair falling past a side moves with the head."""
        x0, y0, x1, y1 = self.picture
        reach = max(EDGE_HOLD * face_h, 1.0)
        x, y = self.extra_src[:, 0], self.extra_src[:, 1]
        body = self._torso_w
        top = np.clip((y - y0) / max(min(reach, forehead_y - y0), 1.0), 0.0, 1.0)
        bottom = np.clip((y1 - y) / max(min(reach, y1 - chin_y), 1.0), 0.0, 1.0)
        left = 1 - body * (1 - np.clip((x - x0) / reach, 0.0, 1.0))
        right = 1 - body * (1 - np.clip((x1 - x) / reach, 0.0, 1.0))
        hold = np.stack([top, bottom, left, right], axis=1)
        # Only the edges that cut the person hold: hair clear of the top edge moves down
        # with the head, whole.
        hold[:, ~np.array(self.edges)] = 1.0
        return hold

    def shapes(
        self, target: retarget.TargetFace, eyes: list[tuple[np.ndarray, np.ndarray]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Destination polygons (K, 3, 2), their dst->src affines (K, 2, 3), valid (K,);
        ``eyes``: ``eyeballs(target)``, if the caller has it already."""
        dst_face = target.points[:468, :2].astype(np.float64)
        head_xy = warp.apply_affine(target.head, self.extra_src)
        torso_xy = warp.apply_affine(target.torso, self.extra_src)
        w = self._torso_w[:, None]
        static_or_torso = self.extra_src * (1 - w) + torso_xy * w
        head_or_torso = head_xy * (1 - w) + torso_xy * w
        dst_extra = np.where(self._is_head[:, None], head_or_torso, static_or_torso)
        # Ring 1 sits just outside the face outline: it shares the outline's own motion
        # (which includes the 3D turn) half-and-half with the rigid head, so the hair at
        # the cheeks neither tears from a turning face nor gets crossed by it.
        n = len(topology.FACE_OVAL)
        oval_move = dst_face[topology.FACE_OVAL] - self.source[topology.FACE_OVAL, :2]
        dst_extra[:n] = (dst_extra[:n] + self.extra_src[:n] + oval_move) / 2
        # The picture's edges hold the person: motion away from an edge fades out toward
        # it (``EDGE_HOLD``).
        move = dst_extra - self.extra_src
        top, bottom, left, right = self._hold.T
        move[:, 1] *= np.where(move[:, 1] < 0, bottom, top)
        move[:, 0] *= np.where(move[:, 0] > 0, left, right)
        move[self._on_edge] = 0.0  # the edge points sliding with the head stay on their edge
        dst_extra = self.extra_src + move
        dst_all = np.vstack([dst_face, dst_extra])

        bg_dst, bg_src = dst_all[self.background], self.src_all[self.background]
        order = np.argsort(-target.points[self.faces, 2].mean(axis=1), kind="stable")
        faces = self.faces[order]
        face_dst, face_src = dst_all[faces], self.src_all[faces]
        tri_dst = np.concatenate([bg_dst, face_dst])
        tri_src = np.concatenate([bg_src, face_src])
        affines, valid = warp.triangle_affines(tri_src, tri_dst)

        # Openings: the eyeballs (``eyeballs``); the mouth opening rides with the head and
        # the upper lip (``_mouth_affine``).
        if eyes is None:
            eyes = self.eyeballs(target)
        hole_polys = [poly for poly, _ in eyes]
        hole_affines = [affine for _, affine in eyes]
        hole_polys.append(dst_face[topology.INNER_LIPS])
        hole_affines.append(self._mouth_affine(target, dst_face))
        # Fan-triangulate each opening (fillConvexPoly needs convex pieces).
        fan_dst, fan_aff = [], []
        for poly, aff in zip(hole_polys, hole_affines, strict=True):
            centre = poly.mean(axis=0)
            nxt = np.roll(poly, -1, axis=0)
            fan_dst.append(np.stack([np.broadcast_to(centre, poly.shape), poly, nxt], axis=1))
            fan_aff.append(np.broadcast_to(aff, (len(poly), 2, 3)))
        holes = np.concatenate(fan_dst)
        n_bg = len(bg_dst)
        all_dst = np.concatenate([tri_dst[:n_bg], holes, tri_dst[n_bg:]])
        all_aff = np.concatenate([affines[:n_bg], np.concatenate(fan_aff), affines[n_bg:]])
        all_valid = np.concatenate([valid[:n_bg], np.ones(len(holes), dtype=bool), valid[n_bg:]])
        return all_dst, all_aff, all_valid

    def eyeballs(self, target: retarget.TargetFace) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each eye's opening this frame (its lid contour, (N, 2)) with the dst -> src
        affine of the eyeball seen through it: spanning the eye's corners (so a turned
        head foreshortens it along the eye) at the head's scale across it, shifted by the
        gaze; the lids slide over it instead of squashing it."""
        dst_face = target.points[:468, :2].astype(np.float64)
        head_scale = float(np.sqrt(abs(warp.det2(target.head[:, :2])))) or 1.0
        out = []
        for (ring, upper, lower, corners, _), gaze in zip(topology.EYES, target.gaze_px, strict=True):
            src_c = self.source[list(corners), :2]
            dst_c = dst_face[list(corners)]
            # A widened eye stretches the eyeball to fill it rather than showing the lids.
            src_open = np.linalg.norm(self.source[upper, :2] - self.source[lower, :2], axis=1).mean()
            dst_open = np.linalg.norm(dst_face[upper] - dst_face[lower], axis=1).mean()
            across = head_scale * max(1.0, dst_open / max(src_open * head_scale, 1e-6))
            out.append((dst_face[ring], _eyeball_affine(src_c, dst_c + gaze, across)))
        return out

    def _mouth_affine(self, target: retarget.TargetFace, dst_face: np.ndarray) -> np.ndarray:
        """dst -> src affine of the mouth opening: it moves with the head, plus however far
        the middle of the upper lip moved beyond the head's motion. The interior stays under the
        upper lip, as the upper teeth do, and is never stretched; lips that part where the
        picture had lips show what the picture had between them, not its lips again (a
        pout or a smirk arches the lips: riding with the head alone, the opening showed
        lip where it had risen above the picture's own opening)."""
        upper = list(topology.UPPER_INNER_LIP_MIDDLE)
        src = self.source[upper, :2].mean(axis=0)
        moved = warp.apply_affine(target.head, src)
        delta = dst_face[upper].mean(axis=0) - moved
        inv = warp.invert_affine(target.head)
        return np.hstack([inv[:, :2], (inv[:, 2] - inv[:, :2] @ delta)[:, None]])

    def own_mouth(self, target: retarget.TargetFace) -> np.ndarray | None:
        """The picture's own mouth opening (its inner-lip outline, (N, 2)) where the mouth
        opening's affine carries it this frame: the part of the parted lips that shows
        what the picture has between its own lips (its teeth, when it smiles with them).
        None when the picture's lips are closed or barely parted (``OWN_MOUTH_MIN``)."""
        if self._own_lips is None:
            return None
        to_src = self._mouth_affine(target, target.points[:468, :2].astype(np.float64))
        return warp.apply_affine(warp.invert_affine(to_src), self._own_lips)

    @functools.cached_property
    def _own_lips(self) -> np.ndarray | None:
        """The picture's own inner-lip outline (N, 2) less the lower lip's inner edge,
        which is lip, not mouth (where the performer's lips part wider than the
        picture's, it showed as a pink line across the teeth); None if barely open."""
        lips = self.source[:468, :2].astype(np.float64)
        upper, lower = topology.INNER_LIP_PAIRS.T
        a, b = topology.MOUTH_CORNERS
        width = float(np.linalg.norm(lips[a] - lips[b]))
        across = lips[upper] - lips[lower]
        length = np.maximum(np.linalg.norm(across, axis=1), 1e-6)
        inset = np.minimum(OWN_MOUTH_INSET * width, length / 2)
        if (length - inset).max() < OWN_MOUTH_MIN * width:
            return None
        lips[lower] += across * (inset / length)[:, None]
        return lips[topology.INNER_LIPS]

    @property
    def coarse_shapes(self) -> int:
        """How many of ``shapes()`` come first and may reach beyond the head: the
        background triangles. The rest (openings, face) lie inside ``detail_rois()[0]``
        with a margin of at least ``HEAD_MARGIN_MIN`` px (``Warper.maps(coarse_shapes=)``)."""
        return len(self.background)

    def detail_rois(self, target: retarget.TargetFace) -> list[tuple[warp.Roi, int]]:
        """Finer sampling where pieces with very different motion meet: the head (every
        2 px), the eyes and the mouth (every pixel)."""
        face = target.points[:468, :2]
        src = self.source[:468, :2]
        head = np.vstack([face, src])
        margin = max(0.08 * self.face_height, HEAD_MARGIN_MIN)
        out = [(warp.Roi.around(head, margin, self.width, self.height, 2), 2)]
        for ring in (topology.RIGHT_EYE_RING, topology.LEFT_EYE_RING, topology.INNER_LIPS):
            pts = np.vstack([face[ring], src[ring]])
            out.append((warp.Roi.around(pts, 0.04 * self.face_height + 3, self.width, self.height, 1), 1))
        return out

    def moving_roi(self, target: retarget.TargetFace, align: int) -> warp.Roi:
        """The canvas region where the warp can differ from identity this frame.

        The head rings and the face (source and destination) always; when the torso
        moves also the person's box from the neck down, grown by the farthest any of its
        corners moves: the warp moves the whole band below the chin, but outside the
        person the background plate shows.
        """
        n = len(topology.FACE_OVAL)
        every = np.vstack(
            [
                target.points[:468, :2],
                self.extra_src[: 3 * n],
                warp.apply_affine(target.head, self.extra_src[: 2 * n]),
            ]
        )
        roi = warp.Roi.around(every, 4, self.width, self.height, align)
        if not np.array_equal(target.torso, warp.IDENTITY):
            top = max(0.0, self.source[topology.CHIN, 1] - 0.1 * self.face_height)
            x0, y0, x1, y1 = self.person_box
            corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
            moved = warp.apply_affine(target.torso, corners)
            reach = np.abs(moved - corners).max(axis=0) + 4
            body = np.array([[x0 - reach[0], max(top, y0 - reach[1])], [x1 + reach[0], y1 + reach[1]]])
            both = warp.Roi.around(
                np.vstack([body, [[roi.x0, roi.y0], [roi.x1, roi.y1]]]), 0, self.width, self.height, align
            )
            roi = warp.Roi(both.x0, both.y0, both.x1, self.height if y1 >= self.height - 2 else both.y1)
        return roi
