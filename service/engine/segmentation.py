"""The person's mask: MediaPipe's SelfieSegmentation (``Segmenter``), run at the
person's own scale when their face is small in the picture.
"""

from __future__ import annotations

import numpy as np

from service.engine import landmarks

#: A person whose face is small in the picture is segmented at its own scale: the model
#: sees the whole picture at 256 x 144, where a face 60 px wide in 1280 x 720 is 12 px,
#: and the person came out as a coarse blob, or a haze over the whole picture. The crop
#: is a square ``SEG_CROP`` face widths on a side (head, shoulders, most of the chest),
#: ``SEG_ABOVE`` of it above the face's centre, used where it is at most ``1 / SEG_ZOOM``
#: of the picture's longer side (the model sees the person at least that much larger).
#: Below the crop, in its columns, the whole picture's mask continues the body; beside
#: and above it there is no person (only the head and torso move). Each edge of the
#: crop inside the picture fades over ``SEG_FEATHER`` of its side.
SEG_CROP = 6.0
SEG_ABOVE = 1 / 3
SEG_ZOOM = 2.0
SEG_FEATHER = 1 / 8


class Segmenter:
    """SelfieSegmentation: a soft person mask (float32 0..1, image size)."""

    def __init__(self) -> None:
        self._seg = landmarks.solutions().selfie_segmentation.SelfieSegmentation(model_selection=1)

    def mask(self, bgr: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
        """The person mask of ``bgr``; given the ``face``'s landmarks (pixels), a small
        face's person is segmented around it (``SEG_CROP``)."""
        h, w = bgr.shape[:2]
        box = None if face is None else _person_crop(face, w, h)
        if box is None:
            return self._run(bgr)
        x0, y0, x1, y1 = box
        near = self._run(np.ascontiguousarray(bgr[y0:y1, x0:x1]))
        ramp = max(1.0, SEG_FEATHER * (x1 - x0))
        out = np.zeros((h, w), np.float32)
        column = out[y0:, x0:x1]  # from the crop's top down: the crop, then the body below
        if y1 < h:  # the whole picture's mask continues the body, faded in below the crop
            column[:] = self._run(bgr)[y0:, x0:x1]
            own = _edge_ramp(y1 - y0, ramp, False, True)[:, None]
            column[: y1 - y0] += own * (near - column[: y1 - y0])
        else:
            column[:] = near
        column *= _edge_ramp(h - y0, ramp, y0 > 0, False)[:, None] * _edge_ramp(x1 - x0, ramp, x0 > 0, x1 < w)
        return out

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        result = self._seg.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.asarray(np.clip(result.segmentation_mask, 0.0, 1.0), dtype=np.float32)

    def close(self) -> None:
        self._seg.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _person_crop(face: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The square (x0, y0, x1, y1) to segment again around a small face, kept inside the
    picture; None where the face is large enough for the whole picture's mask."""
    size = float(np.ptp(face[:, 0]))
    side = min(SEG_CROP * size, width, height)
    if side * SEG_ZOOM > max(width, height) or side < 8:
        return None
    cx, cy = face[:, 0].mean(), face[:, 1].mean()
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side * SEG_ABOVE, 0), height - side)))
    n = int(side)
    return x0, y0, x0 + n, y0 + n


def _edge_ramp(n: int, ramp: float, low: bool, high: bool) -> np.ndarray:
    """(n,) weights: 1, rising from 0 over ``ramp`` at the low end and falling to 0 at the
    high end where those are set."""
    i = np.arange(n, dtype=np.float32) + 0.5
    w = np.ones(n, np.float32)
    if low:
        w = np.minimum(w, i / ramp)
    if high:
        w = np.minimum(w, (n - i) / ramp)
    return w
