"""The lids of narrowing and shut eyes, where the warp alone does not make them
(``ShutEyes``): drawn eyes (``eyefit``) get theirs drawn, real eyes get theirs lifted out
of the shadow and, shut, their lashes hanging below the lid line. And a character
video's own eyes kept open (``OpenEyes``), so that only the performer's lids close them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from service.engine import eyefit, glasses, retarget, topology, warp

#: Real eyes (``ShutEyes``): the lid stretched over a shutting eye is lifted to this
#: share of the light of the skin around the eye...
LID_LIGHT = 0.95
#: ...as seen through a blur of this many eye widths (Gaussian sigma), after each pixel
#: takes its lightest neighbour (so a lash a pixel or two wide does not count as dark)...
LID_BLUR = 0.03
#: ...by at most this factor...
LID_GAIN = 3.0
#: ...leaving the lash line along the lid: this many times the lashes' thickness.
LASH_KEEP = 1.0
#: Real eyes shut (``ShutEyes._turn_lashes``): past the ring beyond the eye, the lid's
#: skin is the picture closed (grey-level morphology) over this many eye widths, wider
#: than a lash...
LASH_STRAND = 0.07
#: ...and lashes are taken off the lid up to this far past the ring (eye widths)...
LASH_REACH = 0.25
#: ...and shown below the lid line, this much shorter (they point at the viewer)...
LASH_SQUASH = 0.7
#: ...and this much darker (their darkness against the skin times this, at most 0.9).
LASH_DOWN = 1.5
#: Glasses (``_RimHeld``): a rim over an eye is held where the head alone takes it from
#: this share of the eye's opening, wholly at the second...
RIM_FROM, RIM_FULL = 0.9, 0.6
#: ...fading back into the warped picture over this many eye widths inside the box.
RIM_FADE = 0.15
#: ...and it is found clear of the lash line: the lashes' thickness times this above the lid.
RIM_LASHES = 2.0


@dataclasses.dataclass(frozen=True)
class Lid:
    """What one eye's lids need, measured once on the picture."""

    eye: int  # index into ``topology.EYES``
    drawn: bool
    upper_arc: np.ndarray  # the ring just beyond the eye, above its axis, inner to outer
    lower_arc: np.ndarray  # ...and below it
    lash: float  # the lash line's thickness along the upper lid, eye widths
    colour: np.ndarray  # the lashes' colour (BGR)
    band: float  # how tall (px) the band between the upper lid and ``upper_arc`` is


class _EyeArea:
    """One eye of one frame: the box around it (and a real eye's upper lashes' reach),
    and the skin filled in over it."""

    def __init__(self, out: np.ndarray, target: np.ndarray, lid: Lid) -> None:
        import cv2

        eye = topology.EYES[lid.eye]
        inner, outer = (target[c, :2].astype(np.float64) for c in eye.corners)
        self.width = float(np.linalg.norm(outer - inner)) or 1.0
        self.up = retarget.line_axes(inner, outer)[1]
        self.lid = np.vstack([inner, target[eye.upper, :2], outer])
        self.low = np.vstack([inner, target[eye.lower, :2], outer])
        self.upper_arc = target[lid.upper_arc, :2].astype(np.float64)
        self.ring = np.vstack([self.upper_arc, target[lid.lower_arc[::-1], :2]]).astype(np.float64)
        self.feather = max(3, int(0.12 * self.width)) | 1
        size = self.feather // 2 * 2 + 1
        self._grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        h, w = out.shape[:2]
        #: Where the tips of a real eye's upper lashes may reach past the ring (a drawn
        #: eye's lashes are drawn along its lid: its box is the ring's).
        self.tips = self.upper_arc + self.up * (LASH_REACH * self.width)
        reach = self.ring if lid.drawn else np.vstack([self.ring, self.tips])
        x0, y0 = np.floor(reach.min(axis=0)).astype(int) - self.feather
        x1, y1 = np.ceil(reach.max(axis=0)).astype(int) + self.feather + 1
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        self.box = out[y0:y1, x0:x1]  # a view: painting it paints ``out``
        self.shift = np.array([x0, y0], dtype=np.float64)

    @property
    def empty(self) -> bool:
        return self.box.shape[0] < 4 or self.box.shape[1] < 4

    def fill(self, poly: np.ndarray) -> np.ndarray:
        """A mask (uint8, 255 inside) of the box: the polygon ``poly`` (frame px)."""
        return warp.polygon_mask(self.box.shape, poly, self.shift, quarter=False, antialiased=False)

    def grow(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` reaching half a feather further out."""
        import cv2

        return cv2.dilate(mask, self._grow)

    def soften(self, mask: np.ndarray, share: float) -> np.ndarray:
        """``mask`` feathered, as float32 0..``share``."""
        import cv2

        return cv2.GaussianBlur(mask, (self.feather, self.feather), 0).astype(np.float32) * np.float32(
            share / 255
        )

    @functools.cached_property
    def whole(self) -> np.ndarray:
        """The mask of everything inside the ring, reaching half a feather past it."""
        return self.grow(self.fill(self.ring))

    @functools.cached_property
    def skin(self) -> np.ndarray:
        """The box with everything inside the ring (``whole``) filled from the skin
        around it (the eye itself is no source for the fill), at half size: the fill is
        smooth, and it costs a quarter. Made once, from the box as the warp left it."""
        import cv2

        h, w = self.box.shape[:2]
        size = (max(1, w // 2), max(1, h // 2))
        small = cv2.inpaint(
            cv2.resize(self.box, size, interpolation=cv2.INTER_AREA),
            cv2.resize(self.whole, size, interpolation=cv2.INTER_NEAREST),
            3,
            cv2.INPAINT_TELEA,
        )
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class _RimHeld:
    """A rim of glasses over one eye's box, while the lids are painted (a context): on
    entering, the rim is taken off where the warp bent it with the lids (filled from
    around it); on leaving, it is laid back where the head alone takes it, over the
    painted lids, as glasses sit in front of the face. Both fade toward the box's edges,
    where the warp moves the rim as the head does, and by ``amount`` (the eye shutting)."""

    def __init__(
        self, area: _EyeArea, rim: glasses.Rim, sampled: warp.Sampled, head: np.ndarray, amount: float
    ) -> None:
        h, w = area.box.shape[:2]
        self.area, self.rim, self.sampled = area, rim, sampled
        x0, y0 = (int(v) for v in area.shift)
        self.maps = sampled.maps(x0, y0, x0 + w, y0 + h)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        edge = np.minimum(np.minimum(xs, w - 1 - xs), np.minimum(ys, h - 1 - ys))
        self.weight = (np.clip(edge / max(1.0, RIM_FADE * area.width), 0.0, 1.0) * amount).astype(np.float32)
        # Where each pixel of the box shows the picture when the head alone moves it.
        back = warp.invert_affine(head)
        px, py = xs + area.shift[0], ys + area.shift[1]
        self.rigid = (
            back[0, 0] * px + back[0, 1] * py + back[0, 2],
            back[1, 0] * px + back[1, 1] * py + back[1, 2],
        )

    def __enter__(self) -> _RimHeld:
        import cv2

        if self.maps is None:
            return self
        box = self.area.box
        bent = self.rim.at(*self.maps) * self.weight
        if bent.max() > 1 / 64:
            hole = cv2.dilate((bent > 1 / 64).astype(np.uint8), np.ones((3, 3), np.uint8))
            fill = cv2.inpaint(box, hole, 3, cv2.INPAINT_TELEA)
            a = bent[..., None]
            box[:] = (fill * a + box * (1 - a) + 0.5).astype(np.uint8)
        return self

    def __exit__(self, *exc: object) -> None:
        import cv2

        if self.maps is None or exc[0] is not None:
            return
        box = self.area.box
        held = self.rim.at(*self.rigid) * self.weight
        if held.max() <= 1 / 64:
            return
        x, y = (v.astype(np.float32) for v in self.rigid)
        colour = cv2.remap(self.sampled.picture, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = held[..., None]
        box[:] = (colour * a + box * (1 - a) + 0.5).astype(np.uint8)


class ShutEyes:
    """The lids of an eye as it narrows and shuts, where the warp alone does not make
    one: drawn eyes get theirs drawn, real eyes get theirs lifted out of the shadow.

    **Drawn eyes** (``eyefit.contour_moves`` found them; ``eyefit.DrawnEyes.eyes``). A drawn open eye
    shows no lid: its lashes sit right on the eye's top edge. Closing it as a real eye
    is closed (the lids slide down and the skin above stretches over the eyeball)
    stretches the drawn lashes into a tall brown band. So as such an eye narrows (below
    ``LID_FROM`` of its opening, wholly at ``LID_FULL``) the region between its upper lid
    and the mesh ring just beyond the eye (which on a fitted drawn eye holds skin) is
    filled from the skin around it, and the lashes are drawn along the upper lid: one
    tapered stroke, as thick and as dark as the drawing's own. The eye below the lid
    shows as the warp leaves it. As it shuts (below ``FROM``, wholly at ``FULL``) the
    rest of the eye, down to the ring below it, is filled too.

    **Real eyes** close by the warp: the band between the upper lid and that ring is
    stretched over the eye, lashes and all, and on a photo with a visible lid that reads
    as a lid. On a small or hooded eye (a smiling face in a small picture) that band is
    thin, only lash line and crease shadow, and stretched to two or three times its
    height it shows as a dark brown smear. So as a real eye's band is stretched (from
    ``STRETCH_FROM`` times its own height, wholly at ``STRETCH_FULL``) the stretched lid,
    above the lash line along the lid (``LASH_KEEP``), is lifted toward ``LID_LIGHT`` of
    the light of the skin around the eye: each pixel multiplied by how much darker its
    neighbourhood is than that (``LID_BLUR``, at most ``LID_GAIN``). The lid keeps its
    texture; a lid already that light (skin between lashes) is left as it is, so a
    picture's own lashes on a visible lid stay. Measured by the stretch, not by how far
    the eye has shut, a tall lid band (a narrowed eye's, or a visible lid's) is left to
    the warp.

    **Real eyes shut** (below ``FROM`` of their opening, wholly at ``FULL``) have their
    lashes turned (``_turn_lashes``). The warp carries the lashes down with the lid still
    pointing up, fanned over it, as on an open eye looking down; the tips past the ring
    it leaves where they were. Shut, a lid hides its lashes' roots and they hang below
    it. So above the lid line, past the lash line's own base (``LASH_KEEP``), whatever is
    darker than the lid's skin (filled in from around the eye inside the ring; past it,
    the picture closed over anything strand-thin) is lifted to it, up to ``LASH_REACH``
    past the ring; below the line each pixel is darkened as the pixel
    ``1 / LASH_SQUASH`` times as far above it was (``LASH_DOWN``); and where the lids
    meet, nothing shows lighter than the skin (the warp leaves a row of the eye's white
    or the lower lid's wet rim there) and the line is one dark line.
    """

    #: Drawn eyes: the eye opening (share of the character's own) where the upper lid
    #: starts being drawn...
    LID_FROM = 0.85
    #: ...and where it is drawn whole.
    LID_FULL = 0.6
    #: Drawn eyes: the eye opening where the whole eye starts being filled (drawn shut)...
    FROM = 0.35
    #: ...and where it is filled whole.
    FULL = 0.1
    #: Real eyes: how far (times its own height) the band above the upper lid is
    #: stretched where the lid starts being lifted...
    STRETCH_FROM = 1.6
    #: ...and where it is lifted whole.
    STRETCH_FULL = 2.4

    @classmethod
    def of(cls, image: np.ndarray, found: np.ndarray, drawn: eyefit.DrawnEyes | None) -> ShutEyes:
        """The lids of ``image``'s eyes, whose landmarks FaceMesh ``found``: the drawn
        ones (``drawn``, if any: ``eyefit.DrawnEyes.find``) as fitted, the others real."""
        worn = glasses.worn(image, found)
        if drawn is None:
            return cls(image, found, [], worn)
        return cls(image, drawn.points, drawn.eyes, worn)

    def __init__(self, image: np.ndarray, points: np.ndarray, drawn: list[int], worn: bool = False) -> None:
        """``points``: the landmarks of ``image`` (drawn eyes fitted: ``fit_drawn_eyes``);
        ``drawn``: indices into ``topology.EYES`` of the drawn eyes (the others are real);
        ``worn``: the face wears glasses (``glasses.worn``), whose rims move with the head
        over its real eyes as they shut (``_RimHeld``)."""
        import cv2

        light = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)[..., 0].astype(np.float32)
        self.glasses = worn
        self._points = points
        #: Each eye's rim of the glasses, with the picture it was found in.
        self._rims: dict[int, tuple[np.ndarray, glasses.Rim | None]] = {}
        self._rest = retarget.eye_openness(points)  # each eye's own opening
        #: Each eye's lids, as measured on the picture.
        self.eyes: list[Lid] = []
        for k, eye in enumerate(topology.EYES):
            inner, outer = (points[c, :2].astype(np.float64) for c in eye.corners)
            width = float(np.linalg.norm(outer - inner)) or 1.0
            along, up = retarget.line_axes(inner, outer)
            skin = eyefit.skin_below(light, points, eye, width, -up)
            runs = [
                eyefit.dark_end(eyefit.scan(light, points[i, :2], up, eyefit.REACH * width), skin)
                for i in eye.upper
            ]
            thick = [end - start for start, end in (r for r in runs if r is not None) if end > start]
            lash = float(np.median(thick)) if thick else 0.05 * width
            lash = float(np.clip(lash, 0.03 * width, 0.12 * width))
            at = (points[eye.upper, :2] + up * lash / 2).astype(np.float32)
            colour = cv2.remap(image, at[:, :1], at[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # The ring around the eye, split into its arcs above and below the eye's
            # axis, each from the inner corner's side to the outer's.
            ring = topology.eye_surround(k)
            rel = points[ring, :2] - points[eye.ring, :2].mean(axis=0)
            above = rel @ up > 0
            upper_arc = ring[above][np.argsort(rel[above] @ along)]
            self.eyes.append(
                Lid(
                    eye=k,
                    drawn=k in drawn,
                    upper_arc=upper_arc,
                    lower_arc=ring[~above][np.argsort(rel[~above] @ along)],
                    lash=lash / width,
                    colour=np.median(colour[:, 0], axis=0),
                    band=_band(points, k, upper_arc),
                )
            )

    def paint(
        self,
        out: np.ndarray,
        target: np.ndarray,
        own: np.ndarray | None = None,
        sampled: warp.Sampled | None = None,
        head: np.ndarray | None = None,
    ) -> None:
        """Make the lids of the narrowing eyes of ``out`` (in place): ``target`` is where
        the warp put the character's landmarks in ``out``; ``own`` the character frame's
        landmarks, whose eyes the narrowing is measured against (default: those of the
        frame these lids were made from; a video's change). Glasses (``worn``) need
        ``sampled``, where the warp took ``out``'s pixels from in that frame, and
        ``head``, the rigid 2x3 affine the head moved by from it to ``out``."""
        now = retarget.eye_openness(target)
        rest = self._rest if own is None else retarget.eye_openness(own)
        for lid in self.eyes:
            opening = now[lid.eye] / max(rest[lid.eye], 1e-6)
            if lid.drawn:
                share = _ramp(opening, self.LID_FROM, self.LID_FULL)
            else:
                rest_band = lid.band if own is None else _lid_band(own, lid)
                stretch = _lid_band(target, lid) / max(rest_band, 1e-6)
                share = _ramp(-stretch, -self.STRETCH_FROM, -self.STRETCH_FULL)
            shut = _ramp(opening, self.FROM, self.FULL)
            rim, rigid = None, 0.0
            if self.glasses and not lid.drawn and sampled is not None and head is not None:
                rigid = _ramp(opening, RIM_FROM, RIM_FULL)
                if rigid > 0:
                    rim = self._rim(sampled.picture, self._points if own is None else own, lid)
            if share <= 0 and (lid.drawn or shut <= 0) and rim is None:
                continue
            area = _EyeArea(out, target, lid)
            if area.empty:
                continue
            if lid.drawn:
                self._draw(area, lid, share, shut)
                continue
            held = (
                _RimHeld(area, rim, sampled, head, rigid)
                if rim is not None and sampled is not None and head is not None
                else contextlib.nullcontext()
            )
            with held:
                if share > 0:
                    self._lift(area, lid, share)
                if shut > 0:
                    self._turn_lashes(area, lid, shut)

    def _rim(self, picture: np.ndarray, own: np.ndarray, lid: Lid) -> glasses.Rim | None:
        """The rim across eye ``lid`` in ``picture`` (its landmarks ``own``), found once
        for each picture (a still's every frame shares one)."""
        cached = self._rims.get(lid.eye)
        if cached is not None and cached[0] is picture:
            return cached[1]
        area = _EyeArea(picture, own, lid)  # (only read: its box is a view of the picture)
        rim = None
        if not area.empty:
            import cv2

            lashes = area.lid + area.up * (RIM_LASHES * lid.lash * area.width)
            rim = glasses.find_rim(
                cv2.cvtColor(area.box, cv2.COLOR_BGR2GRAY),
                (int(area.shift[0]), int(area.shift[1])),
                area.width,
                area.fill(np.vstack([area.lid, area.low[::-1]])) > 0,
                area.fill(np.vstack([lashes, area.low[::-1]])) > 0,
            )
        self._rims[lid.eye] = (picture, rim)
        return rim

    @staticmethod
    def _draw(area: _EyeArea, lid: Lid, lid_share: float, shut_share: float) -> None:
        """A drawn eye's lid: skin above the upper lid and the lashes along it; as it
        shuts, skin over all of it."""
        import cv2

        box = area.box
        skin = area.skin
        # Shown: above the upper lid, and, as the eye shuts, all of it.
        alpha = area.soften(area.grow(area.fill(np.vstack([area.upper_arc, area.lid[::-1]]))), lid_share)
        # Not over the open eye (the lash stroke hides the edge).
        alpha[area.fill(np.vstack([area.lid, area.low[::-1]])) > 0] = 0
        if shut_share > 0:
            np.maximum(alpha, area.soften(area.whole, shut_share), out=alpha)
        alpha = alpha[..., None]
        box[:] = (skin * alpha + box * (1 - alpha) + 0.5).astype(np.uint8)
        # The lashes along the upper lid, over the seam with the open eye.
        stroke = np.zeros(box.shape[:2], dtype=np.uint8)
        outline = _lash_stroke(area.lid, lid.lash * area.width) - area.shift
        cv2.fillPoly(stroke, [np.round(outline * 16).astype(np.int32)], (255,), cv2.LINE_AA, 4)
        cover = (stroke.astype(np.float32) * np.float32(lid_share / 255))[..., None]
        box[:] = (lid.colour * cover + box * (1 - cover) + 0.5).astype(np.uint8)

    @staticmethod
    def _lift(area: _EyeArea, lid: Lid, share: float) -> None:
        """A real eye's stretched lid, above its lash line, lifted toward the skin's light."""
        import cv2

        box = area.box
        target = area.skin.astype(np.float32) * np.float32(LID_LIGHT)
        lightest = cv2.dilate(box, np.ones((3, 3), np.uint8))
        seen = cv2.GaussianBlur(lightest.astype(np.float32), (0, 0), max(1.0, LID_BLUR * area.width))
        gain = np.clip((target + 8) / (seen + 8), 1.0, LID_GAIN)
        above_lashes = area.lid + area.up * (LASH_KEEP * lid.lash * area.width)
        weight = area.soften(area.fill(np.vstack([area.upper_arc, above_lashes[::-1]])), share)
        gain = 1 + (gain - 1) * weight[..., None]
        box[:] = np.clip(box * gain + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _turn_lashes(area: _EyeArea, lid: Lid, share: float) -> None:
        """A real eye's lashes once it is shut: what is darker than the skin above the lid
        line (lashes, lash line) is taken off the lid and shown hanging below the line,
        shorter; where the lids meet, one dark line."""
        import cv2

        box = area.box
        h, w = box.shape[:2]
        inner, along, up, width, arc = _lid_arc(area.lid)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        px = xs + np.float32(area.shift[0] - inner[0])
        py = ys + np.float32(area.shift[1] - inner[1])
        across = (px * along[0] + py * along[1]) / np.float32(width)
        height = px * up[0] + py * up[1] - arc(np.clip(across, 0.0, 1.0)).astype(np.float32)
        taper = np.sqrt(np.clip(np.sin(np.pi * np.clip(across, 0.0, 1.0)), 0.0, 1.0)).astype(np.float32)
        # The lid without its lashes: inside the ring beyond the eye, the skin filled in
        # from around it; past the ring (where the lashes' tips were left, as the warp
        # moves nothing there), the picture with anything strand-thin and dark closed.
        size = max(3, int(LASH_STRAND * width) | 1)
        closed = cv2.morphologyEx(
            box, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        )
        inside = area.soften(area.whole, 1.0)[..., None]
        skin = area.skin.astype(np.float32) * inside + closed.astype(np.float32) * (1 - inside)
        # Taken off: above the line up to the ring and the lashes' reach past it, but the
        # lash line's own base, along the lid where it closes.
        keep = max(1.0, LASH_KEEP * lid.lash * width)
        band = area.soften(area.fill(np.vstack([area.tips, area.lid[::-1]])), 1.0) * taper
        above = band * np.clip(2 * height / keep - 1, 0.0, 1.0)
        dark = (1 - np.clip(box / np.maximum(skin, 1.0), 0.0, 1.0)) * (band * (height > 0))[..., None]
        # Below the line, each pixel shows the darkness as far above it (/ LASH_SQUASH).
        lift = -height / np.float32(LASH_SQUASH) - height
        hanging = cv2.remap(
            dark,
            xs + lift * np.float32(up[0]),
            ys + lift * np.float32(up[1]),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        hanging *= (height < 0)[..., None]
        out = box + np.clip(skin - box, 0, None) * (above * share)[..., None]
        # Where the lids meet, nothing lighter than the skin: the white of the eye or the
        # lower lid's wet rim, which the warp leaves along the line, is under the lid.
        seam = (np.clip(1 + height / keep, 0.0, 1.0) * (height < keep) * taper * share)[..., None]
        out -= np.clip(out - skin, 0, None) * seam
        out *= 1 - np.minimum(hanging * np.float32(LASH_DOWN), 0.9) * np.float32(share)
        # The line itself, the lash line above it and its turned half below it: one dark
        # line, without the pale row the warp leaves where the lids meet.
        span = max(3, int(keep) | 1)
        line = cv2.erode(out, np.ones((span, 1), np.uint8))
        near = (np.clip(1 - np.abs(height) / (0.5 * keep), 0.0, 1.0) * taper * share)[..., None]
        out += (np.minimum(out, line) - out) * near
        box[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _lid_band(points: np.ndarray, lid: Lid) -> float:
    """How tall (px) the band between an eye's upper lid and the ring beyond it is, at
    ``points``, on average across the eye."""
    return _band(points, lid.eye, lid.upper_arc)


def _band(points: np.ndarray, k: int, upper_arc: np.ndarray) -> float:
    """``_lid_band`` of eye ``k``, whose upper arc is ``upper_arc``."""
    eye = topology.EYES[k]
    inner, outer = (points[c, :2].astype(np.float64) for c in eye.corners)
    up = retarget.line_axes(inner, outer)[1]
    return float(points[upper_arc, :2].mean(axis=0) @ up - points[eye.upper, :2].mean(axis=0) @ up)


def _ramp(value: float, start: float, full: float) -> float:
    """0 at ``start``, rising to 1 at ``full`` (``full`` < ``start``), clipped."""
    return float(np.clip((start - value) / (start - full), 0.0, 1.0))


def _lash_stroke(lid: np.ndarray, thickness: float) -> np.ndarray:
    """The outline (N, 2) of an eye's lashes along its upper ``lid`` (points from the
    inner corner to the outer): thickest in the middle, tapering to a third at the
    corners, mostly above the lid."""
    inner, along, up, width, arc = _lid_arc(lid)
    t = np.linspace(0.0, 1.0, 24)
    line = inner + (t * width)[:, None] * along + arc(t)[:, None] * up
    thick = thickness * (1 / 3 + 2 / 3 * np.sin(np.pi * t))
    return np.vstack([line + up * (0.75 * thick[:, None]), (line - up * (0.25 * thick[:, None]))[::-1]])


def _lid_arc(
    lid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, Callable[[np.ndarray], np.ndarray]]:
    """An eye's upper ``lid`` (points from the inner corner to the outer) as one smooth
    arc: the inner corner, the unit vectors along the eye and up across it, the eye's
    width, and the arc's height above the corners' line at a share of the way across."""
    inner, outer = lid[0].astype(np.float64), lid[-1].astype(np.float64)
    width = float(np.linalg.norm(outer - inner)) or 1.0
    along, up = retarget.line_axes(inner, outer)
    rel = lid - inner
    return inner, along, up, width, _parabola((rel @ along) / width, rel @ up)


def _parabola(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The least-squares parabola through the points (``x``, ``y``), as a function of x
    (at least three distinct x): ``warp.parabola``."""
    c, b, a = warp.parabola(x, y)
    return lambda at: (c * at + b) * at + a


#: A video character's eyes: how fast the remembered usual opening fades per frame (a
#: long squint becomes the new usual) and the share of it below which an eye counts as
#: closing and is re-opened from the last open view of it. A blink shuts in two or three
#: frames but opens again over ten or more, so an eye only partly open is re-opened too:
#: the performer's lids then close it from fully open.
OPEN_EYE_DECAY = 0.995
OPEN_EYE_REFRESH = 0.88


class OpenEyes:
    """Keeps a video character's eyes open, so the performer's eyes drive them.

    The performer's blinks and winks close the character's lids, scaled from the
    character's own open eye; a character that blinks by itself would both blur the
    performance and leave nothing to open (the lids' texture is shut in that frame). So
    each eye's last open view — the pixels around it and its lid and iris landmarks — is
    remembered, and in frames where the eye is shut or not yet open again (below
    ``OPEN_EYE_REFRESH`` of its usual opening) it is laid back over the eye (moved with
    the eye's corners, feathered into the face) together with its landmarks.
    """

    def __init__(self) -> None:
        self._usual = [0.0, 0.0]  # usual opening per eye, in eye widths
        self._views: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = [None, None]

    def apply(self, canvas: np.ndarray, points: np.ndarray, opening: np.ndarray | None = None) -> np.ndarray:
        """Re-open closing eyes in ``canvas`` (in place); the landmarks to use with it.

        ``points`` are the smoothed landmarks the render uses, ``opening`` each eye's
        opening as this frame's own detection saw it (``character._Look.opening``; default: read
        from ``points``): a blink lasts a few frames, which smoothing flattens.
        """
        out = points
        openings = retarget.eye_openness(points) if opening is None else opening
        for eye, (_, upper, lower, corners, iris) in enumerate(topology.EYES):
            ends = points[list(corners), :2].astype(np.float64)
            width = float(np.linalg.norm(ends[1] - ends[0])) or 1.0
            now = float(openings[eye])
            usual = self._usual[eye] * OPEN_EYE_DECAY
            self._usual[eye] = max(usual, now)
            moving = np.concatenate([upper, lower, iris])
            view = self._views[eye]
            if now >= OPEN_EYE_REFRESH * usual:
                self._views[eye] = self._remember(canvas, points, ends, width, moving)
            elif view is not None:
                if out is points:
                    out = points.copy()
                self._reopen(canvas, out, ends, moving, view)
        return out

    @staticmethod
    def _remember(
        canvas: np.ndarray, points: np.ndarray, ends: np.ndarray, width: float, moving: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        h, w = canvas.shape[:2]
        centre = ends.mean(axis=0)
        x0, y0 = np.floor(centre - width).astype(int)
        x1, y1 = np.ceil(centre + width).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        patch = canvas[y0:y1, x0:x1].copy()
        return patch, np.array([x0, y0], dtype=np.float64), ends, points[moving].copy()

    @staticmethod
    def _reopen(
        canvas: np.ndarray,
        points: np.ndarray,
        ends: np.ndarray,
        moving: np.ndarray,
        view: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        import cv2

        patch, origin, then, then_points = view
        if patch.size == 0:
            return
        # The similarity taking the remembered eye corners onto today's.
        a, b = complex(*(then[1] - then[0])), complex(*(ends[1] - ends[0]))
        if a == 0:
            return
        rot = b / a
        lin = np.array([[rot.real, -rot.imag], [rot.imag, rot.real]])
        shift = ends[0] - lin @ then[0]
        moved = then_points[:, :2] @ lin.T + shift
        # Where the view goes: the remembered eye outline, enlarged to take in the lids
        # and lashes, feathered.
        h, w = canvas.shape[:2]
        n = (len(moving) - 5) // 2
        outline = np.concatenate([moved[:n], moved[n : 2 * n][::-1]])
        centre = outline.mean(axis=0)
        outline = centre + (outline - centre) * 1.35
        width = abs(b)
        feather = max(3, int(width * 0.25)) | 1
        x0, y0 = np.floor(outline.min(axis=0) - feather).astype(int)
        x1, y1 = np.ceil(outline.max(axis=0) + feather).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        to_box = np.hstack([lin, (lin @ origin + shift - [x0, y0])[:, None]])
        view_px = cv2.warpAffine(
            patch, to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        mask = warp.polygon_mask((y1 - y0, x1 - x0), outline, (x0, y0), quarter=False, antialiased=False)
        alpha = cv2.GaussianBlur(mask, (feather, feather), 0).astype(np.float32)[..., None] / 255
        region = canvas[y0:y1, x0:x1]
        region[:] = (view_px * alpha + region * (1 - alpha)).astype(np.uint8)
        points[moving, :2] = moved
