"""Face landmarks and their temporal smoothing (the person's mask: ``segmentation``).

Only MediaPipe 0.10.21's bundled legacy solutions are used (Apache-2.0 weights that ship
in the wheel): FaceMesh with iris refinement, the full-range FaceDetection (to find faces
too small for FaceMesh's own detector) and, in ``segmentation``, SelfieSegmentation. Landmarks are
returned as float32 (478, 3) arrays in pixels of the analysed image: x right, y down, z
toward the camera is negative, on the same scale as x (MediaPipe's convention).
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Any

import numpy as np

from service.engine import topology

# MediaPipe's C++ side logs to stderr through glog/absl; keep a CLI's terminal clean.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def solutions() -> Any:
    """MediaPipe's legacy solutions (imported on first use: about a second)."""
    from mediapipe.python import solutions

    return solutions


def preload() -> None:
    """Import MediaPipe's solutions now (about a second) rather than in the first frame."""
    solutions()


#: Faces too small for FaceMesh's own detector (it finds none under about a tenth of the
#: picture's width): MediaPipe's full-range face detector looks for one (down to about
#: 20 px, with ``TILE``), and FaceMesh then runs on a square crop ``ZOOM_WINDOW`` times
#: the face's size around it, scaled to ``ZOOM_SIDE`` px (``_square``). Only faces
#: smaller than ``ZOOM_BELOW`` of the picture's shorter side are zoomed in on; in a
#: banner, than ``ZOOM_BELOW`` of its longer side over ``LONG_SIDE`` if that is more.
#: FaceMesh's detector sees the whole picture fitted into a square, where a face as tall
#: as a banner is small: a 5:1 banner's, nine tenths of its height, FaceMesh missed, and
#: the full-range detector's box (0.4 of the height) was refused by the shorter side's
#: limit.
ZOOM_WINDOW = 2.4
ZOOM_SIDE = 384
ZOOM_BELOW = 0.25
LONG_SIDE = 2.0
#: Where the full-range detector sees no face in the whole picture, it looks again in
#: squares ``TILE`` times the picture's shorter side, overlapping by half (and also where
#: the crop around its box showed FaceMesh no face): its input is 192 px square, and a
#: face there comes out larger by as much as the tile is smaller. scikit-image's
#: astronaut placed 150-300 px tall in a 1280x720 frame (its face 27-53 px wide) was
#: found at none of those sizes before, and at each now.
TILE = 0.75
#: A video looks in tiles on every this many searches (``ZOOM_RETRY`` frames apart): a
#: faceless 1280x720 frame took 54 ms to search with its tiles, 9 ms without.
TILE_RETRY = 4
#: A video where the face is nowhere looks for a small one only on every this many frames.
ZOOM_RETRY = 6
#: A face FaceMesh finds must be one to two other judges too (``looks_human``), each
#: shown it upright, framed as it is made to see faces: MediaPipe's short-range face
#: detector, ``HUMAN_CROP`` times the face's size in its ``HUMAN_SIDE`` px input, must
#: score it ``HUMAN_SCORE`` or more; and FaceMesh's own landmark model (``_FaceFlag``),
#: ``FLAG_CROP`` times in its ``FLAG_SIDE`` px input, must give it a face-presence
#: output (which the legacy solution drops for pictures) of ``HUMAN_FLAG`` or more.
#: FaceMesh fits its mesh to whatever its detector passes on, and that took the shared
#: dog for a face once its picture was placed on a wider one. Placed 82 ways where
#: FaceMesh took it so (1280x720, 640x360, 854x480, 1024x1024 and 2048x512 pictures,
#: 150 px up, left, middle and right), the dog scored up to 0.75 with the detector and
#: up to 0.85 on the flag, never both: where its flag was 0.5 or more its score was 0.65
#: at most, and where its score was over 0.7 its flag was 0.05 at most. 408 human and
#: drawn faces (frames of the shared clips, the photo, the cartoon, scikit-image's
#: astronaut, cameraman and LFW faces; turned 25-40°, darkened, blurred; whole and
#: placed small) scored 0.75 or more with a flag of 0.999 or more, but for one 25 px LFW
#: thumbnail of a blurred face turned far aside, which both refuse.
HUMAN_SCORE = 0.7
HUMAN_CROP = 2.0
HUMAN_SIDE = 128
HUMAN_FLAG = 0.5
FLAG_CROP = 1.5
FLAG_SIDE = 192


class FaceTracker:
    """FaceMesh (478 points, iris refined) for one image or one video stream.

    ``video=True`` uses MediaPipe's tracking mode (the previous frame's face seeds the next
    one), which is both faster and steadier; use one tracker per stream. A face too small
    for FaceMesh to find is zoomed in on (``ZOOM_WINDOW``); in a video the zoom then
    follows it from frame to frame.
    """

    def __init__(self, *, video: bool, min_confidence: float = 0.5) -> None:
        self._mesh = self._face_mesh(static=not video, min_confidence=min_confidence)
        self._min_confidence = min_confidence
        self._video = video
        self._zoom_mesh: Any = None  # FaceMesh on zoomed crops (made when first needed)
        self._finder: Any = None  # the full-range face detector (made when first needed)
        self._judge: Any = None  # the short-range face detector (made when first needed)
        self._flag: _FaceFlag | None = None  # the landmark model's face flag (likewise)
        self._window: tuple[float, float, float] | None = None  # a small face's last crop
        self._since_search = ZOOM_RETRY  # frames since the detector last looked
        self._searches = 0  # how many times it has looked
        self._following = 0  # frames a small face has been followed

    @staticmethod
    def _face_mesh(*, static: bool, min_confidence: float) -> Any:
        return solutions().face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=0.5,
        )

    def detect(self, bgr: np.ndarray) -> np.ndarray | None:
        """Landmarks (478, 3) in pixels, or None when no face is found."""
        if self._window is not None:  # following a small face
            self._following += 1
            if self._following % ZOOM_RETRY == 0:
                # Now and then the whole frame as well: a face FaceMesh finds by itself
                # (the performer, back from turning away) wins over a small one (which
                # may be someone in the background).
                points = _mesh_points(self._mesh, bgr)
                if points is not None:
                    self._window = None
                    return points
            points = _mesh_points(self._zoom(), bgr, self._window)
            if points is not None:
                self._window = _window_around(points)
                return points
            self._window = None
        points = _mesh_points(self._mesh, bgr)
        return points if points is not None else self._search(bgr)

    def detect_around(self, bgr: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """Landmarks found again in a zoomed crop of ``bgr`` around a face seen at
        ``points`` (as in a smaller copy of the picture, scaled to ``bgr``), or None."""
        return _mesh_points(self._zoom(), bgr, _window_around(points))

    def _search(self, bgr: np.ndarray) -> np.ndarray | None:
        """Look for a small face (in a video, on every ``ZOOM_RETRY``-th frame only)."""
        if self._video and self._since_search < ZOOM_RETRY - 1:
            self._since_search += 1
            return None
        self._since_search = 0
        self._searches += 1
        # In tiles too (the detector's box can also be off): in a video, now and then.
        tiles = not self._video or self._searches % TILE_RETRY == 1
        points = None
        for tiled in (False, True) if tiles else (False,):
            window = self._find_small_face(bgr, tiled)
            points = None if window is None else _mesh_points(self._zoom(), bgr, window)
            if points is not None:
                break
        self._window = None if points is None else _window_around(points)
        return points

    def _zoom(self) -> Any:
        if self._zoom_mesh is None:
            # Tracking, in a video: the crop follows the face, which stays at its centre.
            self._zoom_mesh = self._face_mesh(static=not self._video, min_confidence=self._min_confidence)
        return self._zoom_mesh

    def _find_small_face(self, bgr: np.ndarray, tiled: bool) -> tuple[float, float, float] | None:
        """The crop around the largest face the full-range detector sees, if it is small:
        in the whole picture, or ``tiled``, in tiles of it (``TILE``)."""
        height, width = bgr.shape[:2]
        if tiled:
            faces = [
                (cx + x0, cy + y0, size)
                for x0, y0, side in _tiles(width, height)
                for cx, cy, size in self._faces(bgr[y0 : y0 + side, x0 : x0 + side])
            ]
        else:
            faces = self._faces(bgr)
        if not faces:
            return None
        cx, cy, side = max(faces, key=lambda face: face[2])
        if side <= 0 or side >= ZOOM_BELOW * max(min(width, height), max(width, height) / LONG_SIDE):
            return None  # a face this large FaceMesh would have found: not a face
        return cx, cy, side * ZOOM_WINDOW

    def _faces(self, bgr: np.ndarray) -> list[tuple[float, float, float]]:
        """Each face the full-range detector sees in ``bgr``: its box's centre and longer
        side, in pixels of ``bgr``."""
        import cv2

        if self._finder is None:
            self._finder = solutions().face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self._min_confidence
            )
        height, width = bgr.shape[:2]
        result = self._finder.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        boxes = [d.location_data.relative_bounding_box for d in result.detections or ()]
        return [
            (
                (b.xmin + b.width / 2) * width,
                (b.ymin + b.height / 2) * height,
                max(b.width * width, b.height * height),
            )
            for b in boxes
        ]

    def looks_human(self, bgr: np.ndarray, points: np.ndarray) -> bool:
        """Whether the face FaceMesh found at ``points`` (in pixels of ``bgr``) is one to
        the short-range face detector and to the landmark model's face flag as well
        (``HUMAN_SCORE``, ``HUMAN_FLAG``)."""
        return human(*self.judges(bgr, points))

    def judges(self, bgr: np.ndarray, points: np.ndarray) -> tuple[float, float]:
        """The short-range face detector's score and the face flag for the face FaceMesh
        found at ``points``, each shown it turned as its mesh says is upright. FaceMesh
        fits an upright mesh to a face upside down, and both then score it lower than
        the same face turned upright (``driver.ORIENT_VOTES``)."""
        return self._judged(bgr, points), self.flag(bgr, points)

    def _judged(self, bgr: np.ndarray, points: np.ndarray) -> float:
        """The short-range face detector's best score for the face at ``points``."""
        import cv2

        if self._judge is None:
            self._judge = solutions().face_detection.FaceDetection(model_selection=0)
        upright = _upright(bgr, points, HUMAN_CROP, HUMAN_SIDE)
        result = self._judge.process(cv2.cvtColor(upright, cv2.COLOR_BGR2RGB))
        return max((float(d.score[0]) for d in result.detections or ()), default=0.0)

    def flag(self, bgr: np.ndarray, points: np.ndarray) -> float:
        """The landmark model's face flag (0..1) for the face FaceMesh found at ``points``."""
        if self._flag is None:
            self._flag = _FaceFlag()
        return self._flag(_upright(bgr, points, FLAG_CROP, FLAG_SIDE))

    def close(self) -> None:
        self._mesh.close()
        for part in (self._zoom_mesh, self._finder, self._judge):
            if part is not None:
                part.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def human(score: float, flag: float) -> bool:
    """Whether the short-range face detector's ``score`` and the face ``flag``
    (``FaceTracker.judges``) take a face for one (``HUMAN_SCORE``, ``HUMAN_FLAG``)."""
    return score >= HUMAN_SCORE and flag >= HUMAN_FLAG


def _mesh_points(
    mesh: Any, bgr: np.ndarray, window: tuple[float, float, float] | None = None
) -> np.ndarray | None:
    """FaceMesh's landmarks (478, 3) in pixels of ``bgr``, or None. With ``window``
    (centre x, centre y, side), FaceMesh sees only that square, at ``ZOOM_SIDE`` px
    (``_square``)."""
    import cv2

    image, scale, origin = bgr, 1.0, (0.0, 0.0)
    if window is not None:
        square = _square(bgr, window, ZOOM_SIDE)
        if square is None:
            return None
        image, scale, origin = square
    result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if not result.multi_face_landmarks:
        return None
    xyz = landmark_array(result.multi_face_landmarks[0])
    h, w = image.shape[:2]
    xyz *= (w, h, w)
    xyz /= scale
    xyz[:, 0] += origin[0]
    xyz[:, 1] += origin[1]
    return xyz.astype(np.float32)


def _square(
    bgr: np.ndarray, window: tuple[float, float, float], size: int, border: tuple[int, int, int] = (0, 0, 0)
) -> tuple[np.ndarray, float, tuple[float, float]] | None:
    """The square ``window`` (centre x, centre y, side) of ``bgr``, beyond its edge
    ``border``, scaled to ``size`` px (enlarged smoothly, shrunk by area); with the scale
    and the window's top-left corner in ``bgr``. None if the window misses the picture."""
    import cv2

    cx, cy, side = window
    whole = max(1, int(np.ceil(side)))
    x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    part = bgr[max(0, y0) : max(0, y0 + whole), max(0, x0) : max(0, x0 + whole)]
    if part.size == 0:
        return None
    top, left = max(0, -y0), max(0, -x0)
    scale, origin = size / whole, (float(x0), float(y0))
    if whole > size:
        # Shrunk by area, then bordered at the crop's size: a face filling a large photo
        # has a window larger than the photo, which bordered first took 180 MB and 0.6 s
        # (6000 px). Without a border this is the same as shrinking the window.
        xs = np.round(np.array([left, left + part.shape[1]]) * scale).astype(int)
        ys = np.round(np.array([top, top + part.shape[0]]) * scale).astype(int)
        part = cv2.resize(
            part, (max(1, int(xs[1] - xs[0])), max(1, int(ys[1] - ys[0]))), interpolation=cv2.INTER_AREA
        )
        top, left = min(int(ys[0]), size - part.shape[0]), min(int(xs[0]), size - part.shape[1])
        bottom, right = size - part.shape[0] - top, size - part.shape[1] - left
        part = cv2.copyMakeBorder(part, top, bottom, left, right, cv2.BORDER_CONSTANT, value=border)
        return part, scale, origin
    bottom, right = whole - part.shape[0] - top, whole - part.shape[1] - left
    part = cv2.copyMakeBorder(part, top, bottom, left, right, cv2.BORDER_CONSTANT, value=border)
    return cv2.resize(part, (size, size), interpolation=cv2.INTER_LINEAR), scale, origin


#: OpenCV's TFLite importer fills a process-wide table of the operators it knows on its
#: first use, unguarded: a second import started meanwhile sees the table part-filled and
#: refuses the model ("Unsupported operator type PRELU", or PAD). A render's first two
#: imports can meet: the character's check on the render thread, the rest scan's on its
#: own (8 threads importing at once in a fresh process: 2 runs in 20). Imports take turns.
_TFLITE_IMPORT = threading.Lock()


class _FaceFlag:
    """FaceMesh's landmark model (``face_landmark.tflite``, in MediaPipe's wheel), run by
    OpenCV's DNN module for its face-presence output: how likely (0..1) an upright crop
    of a face (``FLAG_SIDE`` px, ``FLAG_CROP`` times its size) shows one."""

    def __init__(self) -> None:
        import cv2
        import mediapipe

        model = pathlib.Path(mediapipe.__file__).parent / "modules" / "face_landmark" / "face_landmark.tflite"
        with _TFLITE_IMPORT:
            self._net = cv2.dnn.readNetFromTFLite(str(model))
        self._outputs = self._net.getUnconnectedOutLayersNames()

    def __call__(self, bgr: np.ndarray) -> float:
        import cv2

        self._net.setInput(cv2.dnn.blobFromImage(bgr, 1 / 255, swapRB=True))  # RGB in 0..1
        flag = next(out for out in self._net.forward(self._outputs) if out.size == 1)  # a logit
        return float(1.0 / (1.0 + np.exp(-float(flag.ravel()[0]))))


def _upright(bgr: np.ndarray, points: np.ndarray, times: float, size: int) -> np.ndarray:
    """The face at ``points`` turned upright (its eyes' outer corners level), in a
    ``size`` px square ``times`` its size (beyond the picture: grey). Cut from a square
    half as large again around it, which the turned one's corners stay within
    (``_square``: shrunk by area, never enlarged, so a small face is resampled once, by
    the turn)."""
    import cv2

    grey = (128, 128, 128)
    window = _window_around(points, times * 1.5)
    cut = min(size * 3 // 2, max(1, int(np.ceil(window[2]))))
    square = _square(bgr, window, cut, grey)
    if square is None:
        return np.full((size, size, 3), grey, np.uint8)
    part, scale, origin = square
    at = (np.array(window[:2]) - origin) * scale  # the face's centre in ``part``
    across = points[topology.LEFT_EYE.corners[1], :2] - points[topology.RIGHT_EYE.corners[1], :2]
    angle = float(np.degrees(np.arctan2(across[1], across[0])))
    turn = np.array(
        cv2.getRotationMatrix2D((float(at[0]), float(at[1])), angle, size * 1.5 / cut), np.float64
    )
    turn[:, 2] += size / 2 - at
    return cv2.warpAffine(part, turn, (size, size), flags=cv2.INTER_LINEAR, borderValue=grey)


def _tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Squares (left, top, side) ``TILE`` times the shorter side, overlapping by half,
    that cover a picture of ``width`` x ``height``."""
    side = max(1, int(min(width, height) * TILE))

    def starts(length: int) -> list[int]:
        return sorted({*range(0, max(1, length - side), max(1, side // 2)), max(0, length - side)})

    return [(x, y, side) for y in starts(height) for x in starts(width)]


def _window_around(points: np.ndarray, times: float = ZOOM_WINDOW) -> tuple[float, float, float]:
    """The square (centre x, centre y, side) ``times`` the size of the face at ``points``,
    centred on it: by default, the zoom crop for it."""
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), float(max(hi - lo)) * times


#: One landmark of a serialised ``NormalizedLandmarkList``: the list's field 1 (a
#: 15-byte message) holding x, y, z as fields 1-3 (fixed32 floats).
_LANDMARK_RECORD = np.dtype(
    [
        ("tag", "u1"),
        ("size", "u1"),
        ("tx", "u1"),
        ("x", "<f4"),
        ("ty", "u1"),
        ("y", "<f4"),
        ("tz", "u1"),
        ("z", "<f4"),
    ]
)
_LANDMARK_TAGS = {"tag": 0x0A, "size": 15, "tx": 0x0D, "ty": 0x15, "tz": 0x1D}


def landmark_array(landmarks: Any) -> np.ndarray:
    """(N, 3) float64 x, y, z of a MediaPipe ``NormalizedLandmarkList``.

    Read from the message's wire encoding in one pass (a tenth of the cost of reading
    1,434 attributes from Python, and this runs for every frame of both faces while the
    render thread waits for the GIL); any other layout of the message (a landmark with
    visibility, say) is read attribute by attribute.
    """
    data = landmarks.SerializeToString()
    if len(data) % _LANDMARK_RECORD.itemsize == 0:
        rec = np.frombuffer(data, dtype=_LANDMARK_RECORD)
        if all((rec[name] == value).all() for name, value in _LANDMARK_TAGS.items()):
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)


def face_size(points: np.ndarray) -> float:
    """A robust face scale in pixels: distance between the outer eye corners."""
    a, b = points[topology.RIGHT_EYE_CORNERS[1], :2], points[topology.LEFT_EYE_CORNERS[1], :2]
    return float(np.linalg.norm(a - b)) or 1.0


class OneEuroFilter:
    """The One-Euro filter (Casiez et al. 2012) over an array of values.

    Low jitter at rest (cut-off ``min_cutoff`` Hz) and low lag in fast motion (the cut-off
    rises by ``beta`` per unit/s of speed), so detector noise is removed without dulling
    blinks. Values should be in a normalised unit (here: face widths) for the parameters
    to mean the same thing at any resolution.
    """

    def __init__(self, rate: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        self._rate = rate
        self._min_cutoff = min_cutoff
        self._beta = beta
        self._d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self._rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._x is None or self._dx is None:
            self._x = x.astype(np.float64)
            self._dx = np.zeros_like(self._x)
            return x.copy()
        dx = (x - self._x) * self._rate
        a_d = self._alpha(self._d_cutoff)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self._min_cutoff + self._beta * np.abs(self._dx)
        a = self._alpha(cutoff)
        self._x = self._x + a * (x - self._x)
        return self._x.astype(x.dtype)


#: A face that moves by more than this many face widths from one look to the next was
#: cut to (an edit), not moved there. Ordinary motion, even between frames analysed 1/8 s
#: apart, is ~0.03.
CUT_JUMP = 0.25


def face_jump(a: np.ndarray, b: np.ndarray) -> float:
    """Mean landmark displacement from face ``a`` to face ``b``, in widths of ``b``."""
    return float(np.linalg.norm(b[:, :2] - a[:, :2], axis=1).mean()) / face_size(b)


class FaceSmoother:
    """One-Euro smoothing of one face's landmarks over a video.

    It smooths in widths of the face (so its parameters mean the same at any
    resolution), holds the last face found while none is (with ``hold``, for that many
    calls at most: then there is no face until one is found again, and smoothing starts
    afresh), and starts afresh when the face jumps by more than ``CUT_JUMP`` (rather
    than gliding across a cut).
    """

    def __init__(
        self, rate: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0, hold: int | None = None
    ) -> None:
        self._rate, self._min_cutoff, self._beta, self._d_cutoff = rate, min_cutoff, beta, d_cutoff
        self._hold = hold
        self._missed = 0  # calls in a row without a face found
        self._filter: OneEuroFilter | None = None
        self._unit = 1.0
        self._raw: np.ndarray | None = None

    @property
    def tracking(self) -> bool:
        """Whether a face has been found yet."""
        return self._raw is not None

    def __call__(self, found: np.ndarray | None) -> np.ndarray | None:
        """The smoothed face for this frame's detection (None: none found in it), or None
        if no face has been found yet."""
        if found is not None:
            if self._raw is not None and face_jump(self._raw, found) > CUT_JUMP:
                self._filter = None
            self._raw = found
            self._missed = 0
        else:
            self._missed += 1
            if self._hold is not None and self._missed > self._hold:
                self._raw, self._filter = None, None
        if self._raw is None:
            return None
        if self._filter is None:
            self._unit = face_size(self._raw)
            self._filter = OneEuroFilter(
                self._rate, min_cutoff=self._min_cutoff, beta=self._beta, d_cutoff=self._d_cutoff
            )
        return self._filter(self._raw / self._unit) * self._unit
