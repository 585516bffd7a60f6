"""The independent face measurer for the engine benches: dlib HOG + 68-point landmarks.

The engine animates with MediaPipe FaceMesh; judging it with the same detector would
grade its own homework. dlib's detector and 68-point predictor (packages dlib-bin and
face-recognition-models; bench-only, their training data excludes commercial use, which
is why the engine never loads them) measure the driver and the output alike.

Per frame it yields the signals the bench correlates: mouth opening, each eye's
openness, head roll, a yaw proxy, the face's x/y position, and a face-shape ratio.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib

import numpy as np

SIGNALS = ("mouth", "eye_r", "eye_l", "roll", "yaw", "x", "y")


def _model_path(name: str) -> str:
    # face_recognition_models' __init__ imports pkg_resources (gone in setuptools >= 81):
    # locate the data files without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("install face-recognition-models==0.3.0 (and dlib-bin) for the benches")
    return str(pathlib.Path(next(iter(spec.submodule_search_locations))) / "models" / name)


@dataclasses.dataclass
class Measure:
    """Signals for one frame (None when no face was found)."""

    mouth: float
    eye_r: float  # the eye on the image's left (the subject's right)
    eye_l: float
    roll: float
    yaw: float
    x: float
    y: float
    rigid: np.ndarray  # eye corners and nose points (10, 2), for shape comparisons
    box: tuple[int, int, int, int]


class FaceMeasurer:
    """dlib 68-point measurement with a held box when the detector blinks out."""

    def __init__(self, detect_width: int = 640) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(_model_path("shape_predictor_68_face_landmarks.dat"))
        self._dlib = dlib
        self._width = detect_width
        self._last: tuple[int, int, int, int] | None = None
        self.detections = 0
        self.frames = 0

    def measure(self, bgr: np.ndarray) -> Measure | None:
        import cv2

        self.frames += 1
        h, w = bgr.shape[:2]
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        factor = min(1.0, self._width / w)
        small = cv2.resize(gray, None, fx=factor, fy=factor) if factor < 1 else gray
        found = self._detector(small, 0) or self._detector(small, 1)  # upsample only if needed
        if found:
            best = max(found, key=lambda r: r.width() * r.height())
            self._last = (
                int(best.left() / factor),
                int(best.top() / factor),
                int(best.right() / factor),
                int(best.bottom() / factor),
            )
            self.detections += 1
        if self._last is None:
            return None
        rect = self._dlib.rectangle(*self._last)
        shape = self._predictor(gray, rect)
        p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        return _signals(p, w, h, self._last)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def _signals(p: np.ndarray, w: int, h: int, box: tuple[int, int, int, int]) -> Measure:
    iod = _dist(p[36], p[45]) or 1.0
    mouth = (_dist(p[61], p[67]) + _dist(p[62], p[66]) + _dist(p[63], p[65])) / 3 / iod
    eye_r = (_dist(p[37], p[41]) + _dist(p[38], p[40])) / (2 * (_dist(p[36], p[39]) or 1.0))
    eye_l = (_dist(p[43], p[47]) + _dist(p[44], p[46])) / (2 * (_dist(p[42], p[45]) or 1.0))
    right_c, left_c = p[36:42].mean(axis=0), p[42:48].mean(axis=0)
    roll = math.degrees(math.atan2(left_c[1] - right_c[1], left_c[0] - right_c[0]))
    yaw = (p[30, 0] - (p[1, 0] + p[15, 0]) / 2) / ((p[15, 0] - p[1, 0]) or 1.0)
    return Measure(
        mouth=mouth,
        eye_r=eye_r,
        eye_l=eye_l,
        roll=roll,
        yaw=yaw,
        x=p[27, 0] / w,
        y=p[27, 1] / h,
        rigid=p[RIGID].copy(),
        box=box,
    )


#: MediaPipe FaceMesh points standing in for the dlib points ``_signals`` reads (for
#: ``mediapipe_signals``): eye corners, lids, inner lips, cheek edges, nose tip, bridge.
_MP_FOR_DLIB = {
    36: 33, 37: 160, 38: 158, 39: 133, 40: 153, 41: 144,
    42: 362, 43: 385, 44: 387, 45: 263, 46: 373, 47: 380,
    61: 82, 62: 13, 63: 312, 65: 317, 66: 14, 67: 87,
    1: 234, 15: 454, 30: 4, 27: 168,
}  # fmt: skip


def mediapipe_signals(points: np.ndarray, w: int, h: int) -> Measure:
    """The same signals read from MediaPipe landmarks (478, 2+) of a ``w`` x ``h`` frame.

    Only for context: how well the two detectors agree on the same video bounds how well
    an output animated from one can correlate with the driver as seen by the other.
    """
    p = np.zeros((68, 2))
    for dlib_index, mp_index in _MP_FOR_DLIB.items():
        p[dlib_index] = points[mp_index, :2]
    return _signals(p, w, h, (0, 0, w, h))


#: Points that expressions barely move: eye corners, nose bridge and nose base.
RIGID = [36, 39, 42, 45, 27, 28, 29, 30, 31, 35]


def squash(a: np.ndarray, b: np.ndarray) -> float:
    """Anisotropy of the best affine map from rigid points ``a`` to ``b``: s_min / s_max.

    1.0 means the face only moved, turned in-plane or scaled uniformly; a head turning
    away from the camera legitimately lowers it (foreshortening), a squashed warp too.
    """
    src = np.hstack([a, np.ones((len(a), 1))])
    sol, *_ = np.linalg.lstsq(src, b, rcond=None)
    s = np.linalg.svd(sol[:2].T, compute_uv=False)
    return float(s[-1] / s[0]) if s[0] > 0 else 0.0


def pearson(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a), np.asarray(b)
    if len(x) < 3 or x.std() < 1e-9 or y.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
