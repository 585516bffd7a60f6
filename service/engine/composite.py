"""Layering: the person over what lies behind them.

* ``clean_plate`` removes the person from a still picture once (smooth colours inpainted
  at low resolution, the scene's own texture over them), so whatever the moving head
  uncovers shows plausible background;
  ``uncovered`` shows it only there.
* ``blend_person`` lays the warped person over the background with the warped, feathered
  person mask, so background pixels are never dragged along by the head; ``lay_person``
  does the same while warping only where the person shows and blending only along its
  soft edge (the render's hot path).

What is painted over the laid person has modules of its own: the mouth interior
(``mouth``), the eyeballs turned by the gaze (``eyeballs``), the lids of narrowing eyes
(``lids``); and the camera's drift over the whole frame (``camera``).
"""

from __future__ import annotations

import numpy as np

from service.engine import texture, topology, warp

#: Rows per band in ``lay_person``: bands small enough to follow the silhouette, large
#: enough that per-call overhead stays small.
LAY_BAND = 48
#: Alpha at or below which the background shows as is, at or above which the person does
#: (the blend would differ by under half a grey level).
ALPHA_EPS = 1.0 / 512


#: The clean plate is filled at 1/4 of the picture's size, or finer where the face is
#: under 4 x ``PLATE_FACE`` px wide, so that it stays at least ``PLATE_FACE`` px wide
#: there: at a quarter, a person 60 px wide was filled in blocks a third of its face's
#: size, whose edges showed as steps beside the moving head.
PLATE_FACE = 32.0
PLATE_MAX_FACTOR = 4


def plate_factor(face_width: float) -> int:
    """The clean plate's scale divisor for a face ``face_width`` px wide (1..4)."""
    return int(min(max(face_width // PLATE_FACE, 1), PLATE_MAX_FACTOR))


def clean_plate(
    image: np.ndarray,
    person: np.ndarray,
    within: tuple[int, int, int, int] | None = None,
    factor: int = PLATE_MAX_FACTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """The picture with the (dilated) person area inpainted from its surroundings, and
    that area (float32 0..1: how much of each pixel is the inpainted fill).

    The fill's colours are inpainted at 1/``factor`` of the size (``plate_factor``;
    its margin around the person, for stray hair, scales with it); its texture is the
    scene's own, matched patch by patch (``_textured``): what a moving head uncovers
    continues the grass or wall beside it instead of showing a smooth smear. ``within``
    (x0, y0, x1, y1): only that box of ``image`` is the picture (the rest is the
    framing's bands), and the fill is taken from it alone: a person standing at the
    picture's edge uncovers more of the picture's background, not the bands' blur.
    """
    if within is not None:
        x0, y0, x1, y1 = within
        plate, area = image.copy(), np.zeros(person.shape[:2], np.float32)
        plate[y0:y1, x0:x1], area[y0:y1, x0:x1] = clean_plate(
            np.ascontiguousarray(image[y0:y1, x0:x1]), person[y0:y1, x0:x1], factor=factor
        )
        return plate, area
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(
        (person > 0.2).astype(np.uint8) * 255, (w // factor, h // factor), interpolation=cv2.INTER_NEAREST
    )
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8), iterations=2)
    filled = cv2.inpaint(small, mask, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 2)
    big = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    big = _textured(image, big, area > 0.01)
    return blend_person(big, image, area), area


#: The blur (in frame heights) that splits the texture fill into the detail a clean plate
#: takes from it and the colours it leaves to the smooth fill (``_textured``).
PLATE_TEXTURE_BLUR = 1 / 40
#: How far (px) the warp moves the picture before the clean plate starts to show behind
#: it, and from how far on it shows alone (``uncovered``).
PLATE_STILL, PLATE_MOVED = 1.0, 4.0


def _textured(image: np.ndarray, smooth: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``smooth`` (a smooth fill of ``image``'s ``hole``) with the detail of the scene's
    own texture (``texture.fill``) added: what a moving head uncovers is grass or a
    wall's grain, not a smear. The texture fill's colours are not used: where the
    scene beside the hole varies (a room's furniture, a studio's mottled backdrop) the
    patches it copies differ in brightness from their neighbours, and the person's
    outline showed as a lighter ghost; the smooth fill's colours blend into the scene.
    Without enough scene outside the hole to match against, the smooth fill is kept."""
    import cv2

    filled = texture.fill(image, hole, smooth)
    if filled is None:
        return smooth
    h, w = hole.shape
    rough = filled.astype(np.float32)
    # The blur is wide (18 px at 720 rows): done at a quarter of the size, then scaled up.
    quarter = cv2.resize(rough, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(
        cv2.GaussianBlur(quarter, (0, 0), PLATE_TEXTURE_BLUR * h / 4), (w, h), interpolation=cv2.INTER_LINEAR
    )
    return np.clip(smooth.astype(np.float32) + rough - blurred, 0, 255).astype(np.uint8)


def uncovered(
    picture: np.ndarray, plate: np.ndarray, area: np.ndarray, maps: warp.WarpMaps, cover: np.ndarray
) -> np.ndarray:
    """What shows behind the person in the maps' ROI: the picture itself, except where
    the picture shows the person and the warp has moved what is there, which shows the
    clean plate.

    ``area`` is the plate's fill area (``clean_plate``); ``maps`` this frame's warp;
    ``cover`` the warped person's mask on the warp's coarse grid (where it is opaque
    nothing behind shows, and the plate is not blended in). The
    plate is a smooth fill reaching a little beyond the person, since segmentation misses
    stray hair; shown wherever the person is not opaque, it drew a blurred halo around
    the hair in every frame, even with the head at rest. Here it shows as far as the warp
    moves the picture at each sample (``PLATE_STILL`` to ``PLATE_MOVED`` pixels): nothing
    while the head is at rest, all of it behind a head that moved. Comparing the fill
    area where a sample is with where the warp takes it from missed what the rig carries
    along with the head (the hair's edge, the background ring around it): a tilted head
    left the picture's own forehead showing beside its hair.
    """
    from service.engine import raster

    back = picture[maps.roi.slices]
    share = maps.coarse(area, moved=False)
    share *= warp.smoothstep(maps.displacement(), PLATE_STILL, PLATE_MOVED)
    if not (share > ALPHA_EPS).any():
        return back
    out = back.copy()
    raster.blend_plate(out, plate[maps.roi.slices], back, share, cover, maps.f, ALPHA_EPS)
    return out


def person_mask(
    segmentation: np.ndarray, face: np.ndarray, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Soft person mask: the segmentation, with the face outline always included.

    Selfie segmentation can miss stylised (cartoon) faces; the landmarks cannot. The
    feathered outline is drawn and blurred only in a box around the face (it is zero
    elsewhere; the box's margin exceeds the blur radius, so the result is the same as
    blurring the whole frame, at a fraction of the cost — this runs every frame of a
    video character).

    ``face`` is in pixels of the frame of ``shape`` (height, width); the segmentation may
    be smaller (a video character's is made at half size: the model sees 256 x 144
    anyway), and the mask is then built at its size and scaled up at the end.
    """
    import cv2

    h, w = segmentation.shape
    scale = 1.0 if shape is None else w / shape[1]
    oval = face[topology.FACE_OVAL, :2] * scale
    size = float(np.ptp(face[:, 0])) * scale
    k = max(3, int(size * 0.08)) | 1
    x0, y0 = np.floor(oval.min(axis=0)).astype(int) - k - 2
    x1, y1 = np.ceil(oval.max(axis=0)).astype(int) + k + 3
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    mask = segmentation.copy()
    if x1 > x0 and y1 > y0:
        hull = warp.polygon_mask((y1 - y0, x1 - x0), oval, (x0, y0), quarter=False, antialiased=False)
        hull_f = cv2.GaussianBlur(hull, (k, k), 0).astype(np.float32) / 255
        np.maximum(mask[y0:y1, x0:x1], hull_f, out=mask[y0:y1, x0:x1])
    mask = cv2.GaussianBlur(mask, (5, 5), 0)
    if shape is not None and mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return mask


def mask_box(mask: np.ndarray, threshold: float = 0.05) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) bounding the mask's pixels above ``threshold`` (whole image if none)."""
    import cv2

    h, w = mask.shape
    small = cv2.resize(mask, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    x, y, bw, bh = cv2.boundingRect((small > threshold).astype(np.uint8))
    if bw == 0 or bh == 0:
        return 0, 0, w, h
    return max(0, x * 4 - 4), max(0, y * 4 - 4), min(w, (x + bw) * 4 + 4), min(h, (y + bh) * 4 + 4)


def blend_person(person: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """person * alpha + background * (1 - alpha), alpha float32 (H, W) in 0..1."""
    import cv2

    return cv2.blendLinear(person, background, alpha, 1.0 - alpha)


def lay_person(
    out: np.ndarray,
    roi: warp.Roi,
    source: np.ndarray,
    maps: tuple[np.ndarray, np.ndarray],
    back: np.ndarray,
    alpha: np.ndarray,
) -> None:
    """``out[roi] = remap(source, maps) * alpha + back * (1 - alpha)``, in place.

    The same picture as ``blend_person`` over the remapped ROI, at a fraction of the cost:
    the ROI is cut into bands of ``LAY_BAND`` rows; in each, columns where no person shows
    are copied from the background without warping, the run of columns where the person
    is opaque is remapped straight into ``out``, and only the rest (the soft silhouette
    edge, typically a few percent of the ROI) is blended. ``maps`` are the full-resolution
    dst -> src maps of the ROI, ``back`` what shows behind the person there and ``alpha``
    its person mask (float32 0..1), both ROI size.
    """
    import cv2

    region = out[roi.slices]
    mx, my = maps
    height = alpha.shape[0]
    for y0 in range(0, height, LAY_BAND):
        rows = slice(y0, min(height, y0 + LAY_BAND))
        a = alpha[rows]
        shows = np.flatnonzero(a.max(axis=0) > ALPHA_EPS)
        if not len(shows):
            region[rows] = back[rows]
            continue
        lo, hi = int(shows[0]), int(shows[-1]) + 1
        region[rows, :lo] = back[rows, :lo]
        region[rows, hi:] = back[rows, hi:]
        o0, o1 = _longest_run(a[:, lo:hi].min(axis=0) >= 1.0 - ALPHA_EPS)
        o0, o1 = o0 + lo, o1 + lo
        if o1 > o0:
            cv2.remap(
                source,
                mx[rows, o0:o1],
                my[rows, o0:o1],
                cv2.INTER_LINEAR,
                dst=region[rows, o0:o1],
                borderMode=cv2.BORDER_REPLICATE,
            )
        for c0, c1 in ((lo, o0), (o1, hi)) if o1 > o0 else ((lo, hi),):
            if c1 > c0:
                warped = warp.remap(source, mx[rows, c0:c1], my[rows, c0:c1])
                w = a[:, c0:c1]
                region[rows, c0:c1] = cv2.blendLinear(warped, back[rows, c0:c1], w, 1.0 - w)


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """[start, end) of the longest run of True in a 1-D bool array ((0, 0) if none)."""
    if not flags.any():
        return 0, 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.view(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k])
