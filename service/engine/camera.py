"""The camera's drift (``CameraDrift``): the subtle, seeded hand-held motion given to an
image character's shot so that it is not frozen, applied to every whole frame just
before it is encoded.
"""

from __future__ import annotations

import math

import numpy as np

from service.engine import warp


class CameraDrift:
    """Slow, seeded camera motion: a gentle push in and out (zoom 1.015-1.025) centred on
    the character's face, with a touch of pan and roll.

    Centring the zoom on the face keeps the face where the performance puts it: the
    shot breathes around the character instead of sliding the head about, which would
    blur the head motion taken from the driver. Always zoomed in a little more than the
    pan and roll can reveal, so no border ever shows. The motion is a sum of slow
    sinusoids whose phases and frequencies come from the seed: the same seed gives the
    same shot.
    """

    def __init__(self, seed: int, width: int, height: int, anchor: tuple[float, float] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self._w, self._h = width, height
        cx, cy = anchor if anchor is not None else (width / 2, height / 2)
        self._anchor = (float(np.clip(cx, 0, width)), float(np.clip(cy, 0, height)))
        self._freq = rng.uniform(0.03, 0.09, size=(4, 2))  # Hz, two sinusoids per channel
        self._phase = rng.uniform(0, 2 * math.pi, size=(4, 2))
        # Amplitudes: zoom, pan x / y (px), roll (degrees). Kept well below a performer's
        # own head motion so the shot feels alive without competing with the acting.
        self._amp = np.array([0.005, 0.001 * width, 0.001 * height, 0.05])

    def matrix(self, t: float) -> np.ndarray:
        import cv2

        waves = np.sin(2 * math.pi * self._freq * t + self._phase).mean(axis=1) * self._amp
        zoom = 1.02 + waves[0]
        m = np.array(cv2.getRotationMatrix2D(self._anchor, float(waves[3]), float(zoom)), dtype=np.float64)
        m[:, 2] += waves[1:3]
        return self._hide_borders(m)

    def _hide_borders(self, m: np.ndarray) -> np.ndarray:
        """Shift ``m`` (output <- source) just enough that every output corner shows a
        source pixel (zoom 1.015+ leaves room unless the face is at the very edge)."""
        w, h = self._w, self._h
        lin = m[:, :2]
        inv = warp.inv2(lin)
        corners = np.array([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
        for _ in range(3):
            src = (corners - m[:, 2]) @ inv.T
            low = np.minimum(src.min(axis=0), 0.0)
            high = np.maximum(src.max(axis=0) - [w, h], 0.0)
            over = low + high  # how far the source window sticks out, per axis
            if not over.any():
                break
            m[:, 2] += lin @ over  # moves every source corner by -over
        return m

    def apply(self, frame: np.ndarray, t: float) -> np.ndarray:
        import cv2

        return cv2.warpAffine(
            frame, self.matrix(t), (self._w, self._h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
