"""The mouth: how far it is open (``gap``), and its interior painted between the
character's parted lips (``MouthPainter``): the driver's own teeth, tongue and shading,
colour-matched to the character's light, with the character's own teeth kept where its
picture shows them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from service.engine import topology, warp


def gap(points: np.ndarray) -> float:
    """Inner-lip opening as a fraction of mouth width."""
    a, b = topology.MOUTH_CORNERS
    width = float(np.linalg.norm(points[a, :2] - points[b, :2])) or 1.0
    pairs = topology.MOUTH_PAIRS
    return float(np.linalg.norm(points[pairs[:, 0], :2] - points[pairs[:, 1], :2], axis=1).mean() / width)


#: Share of the driver's own teeth colour left on the brightest parts of the mouth
#: interior (``TEETH_GREYS``: from the first grey level it falls, to this at the second);
#: the rest is a white in the character's light (``_light_colour``). The driver's
#: lighting tints their teeth: the talking portrait's warm side light showed on the pale
#: photo character as yellow-orange, stained-looking teeth, and plain grey teeth read as
#: blue beside a warm-lit character's skin. The darker tongue and throat keep their colour.
TEETH_CHROMA = 0.3
TEETH_GREYS = (60.0, 140.0)
#: Below a character's own teeth (``MouthPainter.paint``'s ``own``), the share of the
#: opening's height over which the mouth's dark cavity gives way to the performer's.
OWN_TEETH_FADE = 0.5
#: Below a character's own teeth, the performer's upper teeth are darkened too
#: (``_upper_teeth``): where, in each column, the teeth must start, as a share of the
#: opening's height below its top.
UPPER_TEETH_START = 0.25
#: ...and, where no dark gap ends them (teeth together), the span of the opening's
#: height in which they meet the lower teeth or lip.
UPPER_TEETH_MEET = (0.4, 0.9)
#: ...where the column is darkest, if darker than this share of its run's mean grey; a
#: column lit evenly down to the lip is all upper teeth.
UPPER_TEETH_DIP = 0.8
#: The mouth's cavity there is no lighter than this grey level: a performer grinning
#: with all their teeth shows little that is dark, and the darkest of it lit a flat brown.
CAVITY_GREY = 40.0
#: Where the performer's upper teeth reach below the character's own (a broad smile),
#: the character's own teeth are drawn longer to meet them (``_grown_teeth``), up to
#: this many times the height its own opening shows them at...
TEETH_GROW_MAX = 2.0
#: ...the reach of the performer's teeth taken as the median over this share of the
#: mouth's width (the ends of the teeth are a smooth line; gaps between them are not).
TEETH_REACH_SPAN = 0.15
#: Only the columns of the character's opening that show its teeth grow (its pointed
#: ends show lip, which grown made a red wedge beside the teeth). A pixel there is teeth
#: where it is pale: its colourfulness (max - min channel, as a share of its grey) below
#: ``OWN_TEETH_CHROMA``'s first value, lip from the second (the photo's shaded teeth
#: measure 0.26-0.45, its lips 0.65-1.2); and bright: nothing below ``OWN_TEETH_GREY``'s
#: first share of the opening's brightest grey (its 95th percentile), fully from the
#: second. A column grows as its share of teeth goes from ``OWN_TEETH_SHARE``'s first
#: value to its second.
OWN_TEETH_CHROMA = (0.45, 0.65)
OWN_TEETH_GREY = (0.4, 0.6)
OWN_TEETH_SHARE = (0.3, 0.7)
#: The grey level (in the character's light) above which the interior counts as teeth
#: there: the middle of ``TEETH_GREYS``; a tongue is darker.
TEETH_SPLIT = sum(TEETH_GREYS) / 2
#: The performer's lip along the rim of the opening (``_lip_rim``): how far
#: in from the edge it is looked for (shares of the opening's width, and of its height,
#: whichever is less: wholly up to the first, fading out by the second), how red it must
#: be (from a neutral grey to the performer's lip colour: none at the first share,
#: wholly from the second) and how light (shares of the performer's lip: the cavity is
#: darker).
LIP_RIM = (0.04, 0.08)
LIP_RIM_HEIGHT = (0.1, 0.2)
LIP_REDNESS = (0.3, 0.7)
LIP_SHADE = (0.3, 0.5)
#: ...unless the performer's lip is no redder than this (red's share of its colour over a
#: grey's third): lips that colour cannot tell from teeth (a black-and-white clip).
LIP_MIN_REDNESS = 0.03
#: How colourful a character's face is (``_colourfulness`` of its skin or its lips,
#: whichever is more) for the painted interior to keep its colours: none at the first,
#: all from the second. A black-and-white picture's face measures under 0.03 (JPEG's
#: noise), and a tongue and throat painted red in it read as blood; the shared
#: characters' faces measure 0.53-1.1 (the pale photo's skin 0.15, its lips 0.8).
FACE_COLOURS = (0.05, 0.25)
#: The opening is filled down over the character's own dark gap where it shows just
#: under the lower inner lip (``_over_lower_gap``): pixels darker than ``GAP_DARK`` of
#: its lips' grey, up to ``GAP_REACH`` of the mouth's width below. FaceMesh can put a
#: picture's lower inner lip a pixel or two inside its lip (the shared photo's, on the
#: left), and the warp then carried the gap's dark line down with the lip, under the
#: painted opening and its lip-coloured rim: a pale line over a dark one, a double lip.
GAP_DARK = 0.5
GAP_REACH = 0.04
#: The rim along the lower lip takes the character's own lip colour from just under
#: the opening where that is as red as its lips' median (``_rim_colours``): not at all
#: below the first share of the median's redness, wholly from the second.
RIM_REDNESS = (0.6, 0.9)


class _RimLips(NamedTuple):
    """What ``_lip_rim`` needs of the two faces' lips: the character's colour
    (BGR), and the performer's redness (red's share of its colour over a grey's third)
    and light (its channels' sum)."""

    colour: np.ndarray
    redness: float
    light: float


def _patches(image: np.ndarray, points: np.ndarray, before: int, after: int) -> list[np.ndarray]:
    """The pixels (N, 3) of the box from ``before`` px above and left of each of
    ``points`` (rounded) to ``after`` px below and right of it (exclusive), within
    ``image``; boxes wholly outside it are left out."""
    h, w = image.shape[:2]
    patches = []
    for x, y in np.round(points[:, :2]).astype(int):
        patch = image[max(0, y - before) : min(h, y + after), max(0, x - before) : min(w, x + after)]
        if patch.size:
            patches.append(patch.reshape(-1, 3))
    return patches


def _colourfulness(colour: np.ndarray) -> float:
    """How far a BGR colour is from grey: its channels' spread over their mean."""
    colour = np.asarray(colour, dtype=np.float64)
    return float(np.ptp(colour) / max(float(colour.mean()), 1.0))


def _light_colour(skin: np.ndarray) -> np.ndarray:
    """The colour a white object takes in a picture, estimated from its skin (BGR, mean 1).

    Skin is the light's colour times the skin's own; the square root of the skin's
    normalised colour keeps about half of it, which on the shared media lands within a
    few percent of the colour of the eyes' whites (measured: 0.75/0.95/1.24 against
    0.78/0.95/1.27 for a warm-lit face, 0.97/0.98/1.05 against 0.96/0.96/1.08 for a
    pale one), and unlike them is there with the eyes shut or behind glasses."""
    skin = np.maximum(np.asarray(skin, dtype=np.float64), 1.0)
    light = np.sqrt(np.clip(skin / skin.mean(), 0.5, 2.0))
    return (light / light.mean()).astype(np.float32)


class MouthPainter:
    """Paints the driver's mouth interior into the character's parted lips."""

    def __init__(
        self,
        char_skin: np.ndarray,
        driver_skin: np.ndarray,
        char_lips: np.ndarray | None = None,
        driver_lips: np.ndarray | None = None,
    ) -> None:
        # One brightness gain from the driver's skin to the character's, and the light's
        # colour moved from the driver's to the character's. Full per-channel skin ratios
        # were tried and tint the teeth (blue-grey on pale characters): they carry the
        # difference between two people's skins as well as between two lights.
        ratio = float(char_skin.mean() / max(float(driver_skin.mean()), 1.0))
        gain = float(np.clip(ratio, 0.7, 1.4))
        self._white = _light_colour(char_skin)
        balance = self._white / _light_colour(driver_skin)
        self._scale = (gain * 0.92 * balance / balance.mean()).astype(np.float32)
        # How much of the interior's own colour a black-and-white or faded picture
        # takes (``FACE_COLOURS``), judged with its lips: a pale face's skin alone is
        # nearly grey. The rest is its grey in the character's light.
        self._colours = 1.0
        self._gap = 0.0  # the grey under which the character's own gap is dark (none: 0)
        if char_lips is not None:
            face = max(_colourfulness(char_skin), _colourfulness(char_lips))
            self._colours = float(warp.smoothstep(face, *FACE_COLOURS))
            self._gap = GAP_DARK * float(np.mean(char_lips))
        # The lips, for the performer's lip at the opening's rim (``_lip_rim``): left out
        # where the performer's lip is no redder than ``LIP_MIN_REDNESS`` (colour cannot
        # tell it from their teeth there, and its noise would pick pixels).
        self._lips: _RimLips | None = None
        if char_lips is not None and driver_lips is not None:
            light = max(float(np.sum(driver_lips)), 1.0)
            redness = float(_redness(np.asarray(driver_lips, np.float64)))
            if redness >= LIP_MIN_REDNESS:
                self._lips = _RimLips(np.asarray(char_lips, np.float32), redness, light)

    @classmethod
    def between(
        cls, char: tuple[np.ndarray, np.ndarray], driver: tuple[np.ndarray, np.ndarray]
    ) -> MouthPainter:
        """The painter from the character's (skin, lips) colours to the driver's (``colours``)."""
        return cls(char[0], driver[0], char[1], driver[1])

    @classmethod
    def colours(cls, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A face's (skin, lips) colours (``skin_colour``, ``lip_colour``), as the painter takes them."""
        return cls.skin_colour(image, points), cls.lip_colour(image, points)

    @staticmethod
    def lip_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Median BGR of the lips, around their middle ring (``topology.LIP_RINGS``)."""
        size = max(1, int(0.01 * float(np.ptp(points[:, 0]))))
        samples = _patches(image, points[topology.LIP_RINGS[0]], size, size + 1)
        return np.median(np.concatenate(samples), axis=0) if samples else np.full(3, 128.0)

    @staticmethod
    def skin_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Mean BGR around the cheek landmarks."""
        size = max(2, int(0.02 * float(np.ptp(points[:, 0]))))
        samples = [patch.mean(axis=0) for patch in _patches(image, points[topology.CHEEKS], size, size)]
        return np.mean(samples, axis=0) if samples else np.full(3, 128.0)

    def paint(
        self,
        out: np.ndarray,
        dst: np.ndarray,
        driver: np.ndarray,
        driver_pts: np.ndarray,
        strength: float,
        own: np.ndarray | None = None,
    ) -> None:
        """Fill ``out``'s mouth opening at ``dst`` (478, 2+) from the driver frame, in place.

        ``strength`` (0..1) fades the fill in as the driver's lips part. ``own`` (N, 2):
        where the warp shows the character's own mouth opening (``Rig.own_mouth``), left
        as it is: a character pictured smiling with its teeth shows its own teeth, in its
        own light, and only the rest of the opening is filled. Where the performer's
        upper teeth reach further down, the character's are drawn longer to meet them
        (``_grown_teeth``), and what they do not reach of the performer's is darkened
        (``_below_own_teeth``).
        """
        import cv2

        if strength <= 0.01:
            return
        poly_dst = dst[topology.INNER_LIPS, :2].astype(np.float32)
        poly_src = driver_pts[topology.INNER_LIPS, :2].astype(np.float32)
        h, w = out.shape[:2]
        reach = int(GAP_REACH * float(np.ptp(poly_dst[:, 0]))) if self._gap > 0 else 0
        x0, y0 = np.floor(poly_dst.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(poly_dst.max(axis=0)).astype(int) + 4 + reach
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 < 3 or y1 - y0 < 2:
            return
        affine, _ = cv2.estimateAffine2D(poly_src, poly_dst - [x0, y0], method=cv2.LMEDS)
        if affine is None:
            return
        raw = cv2.warpAffine(
            driver, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        interior = raw * self._scale  # in the character's light, a touch darker: a mouth is shaded
        # The teeth take most of their colour from the character's light, the darker
        # tongue and throat keep their own.
        grey = interior.mean(axis=2, keepdims=True)
        bright = warp.smoothstep(grey, *TEETH_GREYS)
        white = grey * self._white
        kept = (1.0 - np.float32(1.0 - TEETH_CHROMA) * bright) * self._colours  # of its own colour
        interior = white + (interior - white) * kept
        mask = warp.polygon_mask((y1 - y0, x1 - x0), poly_dst, (x0, y0))
        region = out[y0:y1, x0:x1]
        if reach:
            mask = _over_lower_gap(mask, region, self._gap, reach)
        opening = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None]
        alpha = opening * (strength / 255)
        shown = None if own is None else warp.polygon_mask(mask.shape, own, (x0, y0))
        if shown is not None and not shown.any():
            shown = None  # the warp shows none of the character's own opening here
        inside = mask > 127
        filled = bool(inside.any())
        if self._lips is not None and filled:
            interior = _lip_rim(
                self._lips,
                interior,
                raw,
                inside,
                poly_dst,
                None if shown is None else shown / np.float32(255),
                _rim_colours(region, inside, self._lips.colour),
            )
        if shown is not None and filled:
            height = float(np.ptp(poly_dst[:, 1]))
            upper = _upper_teeth(grey[..., 0], inside, height)
            teeth, grown = _grown_teeth(region, shown > 127, upper, inside, strength)
            interior = self._below_own_teeth(interior, grey, inside, shown, upper, height)
            interior += (grown - interior) * teeth[..., None]
            alpha = np.maximum(alpha, opening * teeth[..., None] / 255)  # the teeth drawn whole
        elif shown is not None:  # an opening too thin to fill: leave its own
            alpha *= 1 - cv2.GaussianBlur(shown, (3, 3), 0).astype(np.float32)[..., None] / 255
        region[:] = np.clip(interior * alpha + region * (1 - alpha), 0, 255).astype(np.uint8)

    @staticmethod
    def _below_own_teeth(
        interior: np.ndarray,
        grey: np.ndarray,
        inside: np.ndarray,
        shown: np.ndarray,
        upper: np.ndarray,
        height: float,
    ) -> np.ndarray:
        """``interior`` darkened to the mouth's cavity where it would show the performer's
        upper teeth below the character's own (``shown``: the character's own opening):
        under the character's upper teeth the mouth is open. Their lower teeth and tongue,
        toward the lower lip, still show.

        Two things are darkened. Next to the character's opening, everything, back to the
        performer's own over ``OWN_TEETH_FADE`` of the opening's ``height``. And the
        performer's upper teeth themselves (``upper``, from ``_upper_teeth``): past the
        fade their lower edge showed as a second row of jagged teeth, dark gaps between,
        under the character's own. ``_grown_teeth`` then draws the character's teeth over
        as much of them as it can.
        """
        import cv2

        values = grey[..., 0]
        cavity = interior[(values <= np.percentile(values[inside], 10)) & inside].mean(axis=0)
        cavity *= min(1.0, CAVITY_GREY / max(float(cavity.mean()), 1.0))
        outside = np.where(shown >= 128, 0, 255).astype(np.uint8)
        depth = cv2.distanceTransform(outside, cv2.DIST_L2, 3)
        keep = warp.smoothstep(depth, 0.0, max(1.0, OWN_TEETH_FADE * height))
        soft = cv2.GaussianBlur(upper.astype(np.float32), (3, 3), 0)
        keep = np.minimum(keep, 1.0 - soft)[..., None]
        return cavity + (interior - cavity) * keep


def _over_lower_gap(mask: np.ndarray, picture: np.ndarray, dark: float, reach: int) -> np.ndarray:
    """The opening's ``mask`` (uint8, 0 or 255) grown down, column by column, over the
    run of ``picture``'s pixels darker than ``dark`` (grey) directly under its lower
    edge, at most ``reach`` px (``GAP_DARK``)."""
    columns, _, bottom = _column_spans(mask > 127)
    if not len(columns):
        return mask
    high = mask.shape[0]
    grey = picture.mean(axis=2)
    grown = mask.copy()
    going = np.ones(len(columns), dtype=bool)
    for k in range(1, reach + 1):
        rows = bottom + k
        going &= rows < high
        rows = np.minimum(rows, high - 1)
        going &= grey[rows, columns] < dark
        if not going.any():
            break
        grown[rows[going], columns[going]] = 255
    return grown


def _column_spans(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The columns of a boolean mask with any pixel set, and each one's first and last
    row set."""
    columns = np.flatnonzero(inside.any(axis=0))
    top = np.argmax(inside[:, columns], axis=0)
    bottom = inside.shape[0] - 1 - np.argmax(inside[::-1, columns], axis=0)
    return columns, top, bottom


def _redness(colour: np.ndarray) -> np.ndarray:
    """Red's share of BGR colours (..., 3) over a grey's third."""
    return colour[..., 2] / np.maximum(colour.sum(axis=-1), 1.0) - 1 / 3


def _rim_colours(picture: np.ndarray, inside: np.ndarray, lip: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32: the lip colour the opening's rim takes (``_lip_rim``): below
    each column's middle, the colour of ``picture`` just under the opening ``inside``
    (a median over five columns) where it is about as red as the lips' median colour
    ``lip``, else that colour.

    A lip is lit darker and redder toward its inner edge than its median (the shared
    photo's lower lip): in the median's colour the rim along the lower lip showed as a
    pale pink line. Under a thin drawn lip the picture shows skin, and the median stays.
    """
    high, wide = inside.shape
    out = np.empty((high, wide, 3), np.float32)
    out[:] = lip
    columns, top, bottom = _column_spans(inside)
    if not len(columns):
        return out
    under = picture[np.minimum(bottom + 2, high - 1), columns].astype(np.float32)
    padded = np.pad(under, ((2, 2), (0, 0)), mode="edge")
    under = np.median(np.stack([padded[i : i + len(columns)] for i in range(5)]), axis=0)
    red = warp.smoothstep(_redness(under) / max(float(_redness(lip)), 1e-3), *RIM_REDNESS)[:, None]
    under = lip + (under - lip) * red
    lower = np.arange(high)[:, None] > (top + bottom)[None, :] / 2
    block = out[:, columns]
    block[lower] = np.broadcast_to(under[None], block.shape)[lower]
    out[:, columns] = block
    return out


def _lip_rim(
    lips: _RimLips,
    interior: np.ndarray,
    raw: np.ndarray,
    inside: np.ndarray,
    opening: np.ndarray,
    own: np.ndarray | None,
    colours: np.ndarray,
) -> np.ndarray:
    """``interior`` with the performer's lip, where it shows along the opening's rim, in
    the character's lip colour (``lips``: the painter's, ``_RimLips``).

    The performer's inner-lip landmarks sit a little inside their lips, so the
    opening taken from their frame (``raw``, as warped) carries a sliver of their lip
    along its edge. Moved into the character's light it read as a grey rim between
    the character's red lip and the dark mouth. Near the edge of the opening
    (``inside``, outlined by ``opening``: within ``LIP_RIM`` of its width and
    ``LIP_RIM_HEIGHT`` of its height, so that a mouth barely parted is not all
    rim), and not where the character shows its own opening (``own``, 0..1), a
    pixel counts as lip by how much redder than a neutral grey it is, against the
    performer's lip (``LIP_REDNESS``; teeth are near grey), and by its light
    (``LIP_SHADE``: the dark cavity is not lip); it takes the character's lip
    colour there (``colours``: ``_rim_colours``), shaded as the performer's lip is.
    """
    import cv2

    width, height = np.ptp(opening, axis=0)
    near, far = (
        min(w * float(width), h * float(height)) for w, h in zip(LIP_RIM, LIP_RIM_HEIGHT, strict=True)
    )
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    rim = 1.0 - warp.smoothstep(depth, near, far)
    if own is not None:
        rim *= 1.0 - own
    total = np.maximum(raw.sum(axis=2), 1.0)
    redness = _redness(raw) / lips.redness
    shade = total / lips.light
    lip = warp.smoothstep(redness, *LIP_REDNESS) * warp.smoothstep(shade, *LIP_SHADE) * rim
    fill = colours * np.minimum(shade, 1.0)[..., None]
    return interior + (fill - interior) * lip[..., None]


def _grown_teeth(
    picture: np.ndarray, own: np.ndarray, upper: np.ndarray, inside: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """The character's own teeth, drawn down as far as the performer's upper teeth reach.

    ``picture`` (H, W, 3): the mouth's box as the warp drew it, the character's own
    opening (``own``, bool) showing its teeth; ``upper``: where the performer's upper
    teeth show (``_upper_teeth``) in the opening ``inside``. Returns where the
    character's teeth now show (float32 0..1, soft along their new lower edge) and the
    box with them drawn (float32).

    In a broad smile the performer shows more of their upper teeth than the picture
    shows of the character's: the picture's teeth were kept and the rest darkened, and
    the character grinned with a dark hole under short teeth. Now each column of the
    character's opening is stretched down, from under its upper lip, to the reach of the
    performer's teeth: their median over ``TEETH_REACH_SPAN`` of the mouth's width, at
    most ``TEETH_GROW_MAX`` times the column's own height (so the corners, where the
    picture shows little, grow little), and short of the lower lip; only ``strength`` of
    the way (the painter's, growing as the performer's lips part).
    """
    import cv2

    h, w = own.shape
    cols = own.any(axis=0)
    if not cols.any():
        return np.zeros(own.shape, dtype=np.float32), picture.astype(np.float32)
    top, bottom = _column_span(own)
    tall = np.where(cols, bottom - top, 0)
    reach = np.where(upper.any(axis=0), _column_span(upper)[1], 0)
    longer = np.maximum(reach - bottom, 0) * cols
    span = _reach_span(int(cols.sum()))
    longer = _running_median(longer.astype(np.float32), span)
    longer = cv2.GaussianBlur(longer[None, :], (span, 1), 0)[0]
    floor = _column_span(inside)[1] - 1  # the lower lip's edge, exclusive
    longer = np.clip(np.minimum(longer, (TEETH_GROW_MAX - 1) * tall), 0, np.maximum(floor - bottom, 0))
    longer *= cols * np.float32(strength)
    if longer.max() > 0:  # (most frames of talking: the performer's teeth end higher)
        longer *= cv2.GaussianBlur(_teeth_columns(picture, own)[None, :], (span, 1), 0)[0]
    end = bottom + longer
    rows = np.arange(h, dtype=np.float32)[:, None]
    teeth = np.clip(end[None, :] - rows, 0.0, 1.0) * ((rows >= top[None, :]) & cols[None, :])
    if not longer.any():
        return teeth.astype(np.float32), picture.astype(np.float32)
    scale = tall / np.maximum(end - top, 1.0)
    src_y = np.clip(top + (rows - top) * scale, top, np.maximum(bottom - 1, top)).astype(np.float32)
    src_x = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    grown = cv2.remap(picture, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return teeth.astype(np.float32), grown.astype(np.float32)


def _column_span(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's first row in ``mask`` (bool (H, W)) and the row past its last (an
    empty column: 0 and H)."""
    return np.argmax(mask, axis=0), mask.shape[0] - np.argmax(mask[::-1], axis=0)


def _reach_span(columns: int) -> int:
    """The columns (odd, at least 3) the teeth's reach is smoothed over, of a mouth
    ``columns`` wide: ``TEETH_REACH_SPAN`` of it."""
    return max(3, int(TEETH_REACH_SPAN * columns)) | 1


def _running_median(values: np.ndarray, span: int) -> np.ndarray:
    """The median of each ``span`` (made odd) neighbours of a 1-D array, its ends repeated."""
    half = span // 2
    at = np.arange(len(values))
    windows = values[np.clip(at[:, None] + np.arange(-half, half + 1)[None, :], 0, len(values) - 1)]
    windows.partition(half, axis=1)
    return windows[:, half]


def _teeth_columns(picture: np.ndarray, own: np.ndarray) -> np.ndarray:
    """How much each column of a character's own mouth opening (``own``, bool (H, W), in
    ``picture``, BGR) shows its teeth rather than lip or shadow (float32 (W,), 0..1;
    ``OWN_TEETH_CHROMA``, ``OWN_TEETH_GREY``, ``OWN_TEETH_SHARE``)."""
    rows = np.flatnonzero(own.any(axis=1))
    band = slice(int(rows[0]), int(rows[-1]) + 1)  # only the rows the opening spans
    pixels, own = picture[band].astype(np.float32), own[band]
    grey = pixels.sum(axis=2) / 3
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) / np.maximum(grey, 1.0)
    seen = np.sort(grey[own])
    brightest = float(seen[int(0.95 * (len(seen) - 1))])
    teeth = (1.0 - warp.smoothstep(colourful, *OWN_TEETH_CHROMA)) * warp.smoothstep(
        grey, OWN_TEETH_GREY[0] * brightest, OWN_TEETH_GREY[1] * brightest
    )
    share = (teeth * own).sum(axis=0) / np.maximum(own.sum(axis=0), 1)
    return warp.smoothstep(share, *OWN_TEETH_SHARE).astype(np.float32)


def _upper_teeth(grey: np.ndarray, inside: np.ndarray, height: float) -> np.ndarray:
    """Where a mouth interior (``grey``, float32 (H, W)) shows its upper teeth (bool,
    like ``inside``, the opening).

    In each column, the run brighter than ``TEETH_SPLIT`` that starts within
    ``UPPER_TEETH_START`` of the opening's ``height`` below its top (under the upper lip),
    and two pixels past its end (the teeth's soft lower edge). The lower teeth, whose run
    starts further down, are not included, nor a tongue or throat. A gap of a few pixels
    between teeth, or of a pixel or two along a tooth's edge, does not end a run or keep
    one from starting. A run that reaches the lower lip (teeth together in a grin, or the
    lip as light as the teeth) ends where the column is darkest within ``UPPER_TEETH_MEET``
    of its opening, the line where the teeth meet or where teeth end and lip begins, if
    that is darker than the run by ``UPPER_TEETH_DIP``; otherwise at the lip.
    """
    import cv2

    bright = ((grey > TEETH_SPLIT) & inside).astype(np.uint8)
    lit = (cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((3, 5), np.uint8)) > 0) & inside
    rows = np.arange(inside.shape[0])[:, None]
    top, bottom = (edge[None, :] for edge in _column_span(inside))
    near = lit & (rows <= top + max(2.0, UPPER_TEETH_START * height))  # lit: inside, so below top
    start = np.argmax(near, axis=0)[None, :]
    end = np.argmax(~lit & (rows >= start), axis=0)[None, :]
    end = np.where(end == 0, inside.shape[0], end)  # 0: lit to the last row
    low, high = UPPER_TEETH_MEET
    span = (rows >= top + low * (bottom - top)) & (rows <= top + high * (bottom - top))
    across = cv2.blur(grey, (9, 1))  # the line runs across the mouth
    meet = np.argmin(np.where(span, across, np.inf), axis=0)[None, :]
    run = lit & (rows >= start)
    typical = (grey * run).sum(axis=0) / np.maximum(run.sum(axis=0), 1)
    dips = np.take_along_axis(across, meet, axis=0) < UPPER_TEETH_DIP * typical
    end = np.where(end >= bottom, np.where(dips, meet + 1, bottom), end + 2)
    # The teeth end along a smooth line across the mouth: decided column by column, a
    # lower tooth kept here and darkened there showed as a jagged staircase.
    has = near.any(axis=0)
    if has.sum() >= 3:
        depth = bottom - top
        share = ((end - top) / np.maximum(depth, 1))[0, has]
        share = _running_median(share, _reach_span(int(inside.any(axis=0).sum())))
        end[0, has] = np.round(top[0, has] + share * depth[0, has]).astype(end.dtype)
    upper = has[None, :] & (rows >= start) & (rows < end)
    # A column between two teeth, dark from the lip down, is taken with its neighbours.
    return (cv2.morphologyEx(upper.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 5), np.uint8)) > 0) & inside
