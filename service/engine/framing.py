"""Place a character picture on the output canvas without distorting it.

The picture is scaled uniformly (never stretched). The largest scale that still keeps
the head (face plus hair above and shoulders below) fully in view is chosen, capped at
the scale that covers the canvas; the window is centred on the head and kept inside the
picture. If the picture cannot cover the canvas at that scale (e.g. a square portrait on
a wide canvas), the remaining bands show a blurred, darkened enlargement of the picture
itself, feathered into the sharp picture, as broadcast graphics do.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

#: Head box around the face landmarks' box, in face widths/heights.
HEAD_WIDTH = 2.3
HEAD_ABOVE = 0.55
HEAD_BELOW = 0.9


@dataclasses.dataclass(frozen=True)
class Framing:
    """canvas = source * scale + (dx, dy), on a ``width`` x ``height`` canvas."""

    scale: float
    dx: int
    dy: int
    width: int
    height: int
    covers: bool  # the scaled picture fills the whole canvas

    def to_canvas(self, points: np.ndarray) -> np.ndarray:
        """Map source pixel coordinates (N, 2 or 3) to canvas pixels (z scales too)."""
        out = points.astype(np.float32) * self.scale
        out[:, 0] += self.dx
        out[:, 1] += self.dy
        return out


def choose(src_w: int, src_h: int, face: np.ndarray, width: int, height: int) -> Framing:
    """Framing for a ``src_w`` x ``src_h`` picture whose face landmarks are ``face`` (N, 2+)."""
    x0, y0 = face[:, 0].min(), face[:, 1].min()
    x1, y1 = face[:, 0].max(), face[:, 1].max()
    fw, fh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    hx0, hx1 = max(0.0, cx - HEAD_WIDTH * fw / 2), min(float(src_w), cx + HEAD_WIDTH * fw / 2)
    hy0, hy1 = max(0.0, y0 - HEAD_ABOVE * fh), min(float(src_h), y1 + HEAD_BELOW * fh)
    cover = max(width / src_w, height / src_h)
    contain = min(width / src_w, height / src_h)
    fit_head = min(width / max(hx1 - hx0, 1.0), height / max(hy1 - hy0, 1.0))
    scale = float(np.clip(fit_head, contain, cover))
    sw, sh = src_w * scale, src_h * scale

    def place(size_scaled: float, out: int, centre: float) -> int:
        if size_scaled <= out:  # picture narrower than canvas: centre it, bands either side
            return int(round((out - size_scaled) / 2))
        return int(round(np.clip(out / 2 - centre * scale, out - size_scaled, 0)))

    head_cy = (hy0 + hy1) / 2
    dx = place(sw, width, (hx0 + hx1) / 2)
    dy = place(sh, height, head_cy)
    covers = dx <= 0 and dy <= 0 and dx + sw >= width - 0.5 and dy + sh >= height - 0.5
    return Framing(scale=scale, dx=dx, dy=dy, width=width, height=height, covers=covers)


def render(image: np.ndarray, framing: Framing) -> np.ndarray:
    """The framed canvas (uint8 BGR, framing.height x framing.width)."""
    import cv2

    src_h, src_w = image.shape[:2]
    w, h = framing.width, framing.height
    sw, sh = _scaled_size(framing, src_w, src_h)
    interp = cv2.INTER_AREA if framing.scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    if framing.covers:
        return np.ascontiguousarray(scaled[-framing.dy : -framing.dy + h, -framing.dx : -framing.dx + w])
    canvas = _backdrop(image, w, h)
    # Paste the sharp picture, feathering its edges into the backdrop.
    win = window(framing, src_w, src_h)
    assert win is not None
    cx0, cy0, cx1, cy1 = win.box
    piece = scaled[cy0 - framing.dy : cy1 - framing.dy, cx0 - framing.dx : cx1 - framing.dx]
    alpha = win.alpha
    sharp = canvas.copy()
    sharp[cy0:cy1, cx0:cx1] = piece
    # alpha is exactly 1 inside ``inner`` and exactly 0 beyond the blur's reach around the
    # paste: blend only the frame between (this runs every frame of a video character
    # that does not fill the canvas).
    f = _feather_width(w, h)
    oy0, oy1, ox0, ox1 = max(0, cy0 - f), min(h, cy1 + f), max(0, cx0 - f), min(w, cx1 + f)
    ix0, iy0, ix1, iy1 = win.inner
    out = canvas.copy()
    if iy1 > iy0 and ix1 > ix0:
        out[iy0:iy1, ix0:ix1] = sharp[iy0:iy1, ix0:ix1]
        strips = [
            (slice(oy0, iy0), slice(ox0, ox1)),
            (slice(iy1, oy1), slice(ox0, ox1)),
            (slice(iy0, iy1), slice(ox0, ix0)),
            (slice(iy0, iy1), slice(ix1, ox1)),
        ]
    else:
        strips = [(slice(oy0, oy1), slice(ox0, ox1))]
    for strip in strips:
        a = alpha[strip][..., None]
        out[strip] = (sharp[strip] * a + canvas[strip] * (1 - a)).astype(np.uint8)
    return out


@dataclasses.dataclass(frozen=True)
class Window:
    """Where the sharp picture shows on a canvas it does not cover: ``alpha`` (float32
    0..1, read-only) is 1 inside it and feathers out at its edges, as ``render`` pastes
    it; ``box`` (x0, y0, x1, y1) is where the picture is pasted, ``inner`` the box where
    alpha is exactly 1."""

    alpha: np.ndarray
    box: tuple[int, int, int, int]
    inner: tuple[int, int, int, int]

    def clip(self, mask: np.ndarray, x0: int, y0: int) -> np.ndarray:
        """``mask`` (a region of the canvas whose top-left corner is (x0, y0)) limited to
        the picture, in place, and returned: a person warped past its edge is cut off
        there, as a frame cuts off what moves out of it, not drawn over the bands beside
        it. Only the strips of ``mask`` outside ``inner`` are touched."""
        h, w = mask.shape[:2]
        alpha = self.alpha[y0 : y0 + h, x0 : x0 + w]
        ix0, iy0, ix1, iy1 = self.inner
        top, bottom = int(np.clip(iy0 - y0, 0, h)), int(np.clip(iy1 - y0, 0, h))
        left, right = int(np.clip(ix0 - x0, 0, w)), int(np.clip(ix1 - x0, 0, w))
        strips = (
            (slice(0, top), slice(0, w)),
            (slice(bottom, h), slice(0, w)),
            (slice(top, bottom), slice(0, left)),
            (slice(top, bottom), slice(right, w)),
        )
        for rows, cols in strips:
            region = mask[rows, cols]
            if region.size:
                region *= alpha[rows, cols]
        return mask


def window(framing: Framing, src_w: int, src_h: int) -> Window | None:
    """The sharp picture's ``Window`` on the canvas for a ``src_w`` x ``src_h`` picture,
    or None when it covers the canvas."""
    if framing.covers:
        return None
    return _window(framing.width, framing.height, _paste_box(framing, *_scaled_size(framing, src_w, src_h)))


def _scaled_size(framing: Framing, src_w: int, src_h: int) -> tuple[int, int]:
    return max(1, int(round(src_w * framing.scale))), max(1, int(round(src_h * framing.scale)))


def _paste_box(framing: Framing, sw: int, sh: int) -> tuple[int, int, int, int]:
    """The canvas box (x0, y0, x1, y1) the picture, scaled to ``sw`` x ``sh``, is pasted into."""
    x0, y0 = max(0, framing.dx), max(0, framing.dy)
    return x0, y0, min(framing.width, framing.dx + sw), min(framing.height, framing.dy + sh)


def _feather_width(w: int, h: int) -> int:
    return max(3, int(0.012 * max(w, h))) | 1


@functools.lru_cache(maxsize=4)
def _window(w: int, h: int, box: tuple[int, int, int, int]) -> Window:
    """The paste ``box``'s window on a ``w`` x ``h`` canvas: alpha 1 inside it, feathered
    at the edges that do not reach the canvas's own.

    The same for every frame of a video character (cached: the blur is the costly part).
    """
    import cv2

    cx0, cy0, cx1, cy1 = box
    feather = _feather_width(w, h)
    inner = (
        cx0 + feather if cx0 > 0 else 0,
        cy0 + feather if cy0 > 0 else 0,
        cx1 - feather if cx1 < w else w,
        cy1 - feather if cy1 < h else h,
    )
    alpha = np.zeros((h, w), dtype=np.float32)
    alpha[cy0:cy1, cx0:cx1] = 1.0
    alpha = np.asarray(cv2.GaussianBlur(alpha, (feather * 2 + 1, feather * 2 + 1), 0), dtype=np.float32)
    alpha[inner[1] : inner[3], inner[0] : inner[2]] = 1.0
    alpha.flags.writeable = False
    return Window(alpha, box, inner)


def _backdrop(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """A blurred, slightly darkened enlargement of the picture covering the canvas."""
    import cv2

    src_h, src_w = image.shape[:2]
    cover = max(w / src_w, h / src_h)
    small = cv2.resize(
        image, (max(1, int(src_w * cover / 8)), max(1, int(src_h * cover / 8))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), 3)
    big = cv2.resize(
        small, (int(round(src_w * cover)), int(round(src_h * cover))), interpolation=cv2.INTER_LINEAR
    )
    oy, ox = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return (big[oy : oy + h, ox : ox + w].astype(np.float32) * 0.8).astype(np.uint8)
