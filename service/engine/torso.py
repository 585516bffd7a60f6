"""The performer's torso: shoulders and chest followed by sparse optical flow.

No pose model runs (MediaPipe Pose took more than a whole frame's budget on 2 cores).
Instead, corners on the performer's clothing below the chin are followed from frame to
frame (pyramidal Lucas-Kanade on a small grey copy of the frame, each point checked by
tracking it back again), and one similarity — shift, tilt, scale — from where the points
were on the first frame to where they are now is fitted robustly (RANSAC, so the chin
dipping into the region or a patch of background does not pull it). That follows a lean,
a sway, a shrug of both shoulders, a step toward the camera; it does not follow arms.

The region is the chest below the face, a little wider than the face; when the first
frame shows too little of it (a close-up cut off at the neck) ``TorsoTracker`` gives
None for the whole clip and the render moves the shoulders with the head's travel, as
it did before the torso was tracked. Points lost on the way (occluded, left the frame,
failing the forward-backward check) are replaced by new corners, placed back on the
first frame through the motion found so far, so a 30 s clip keeps its anchor. A new
corner has no say in the fit until it has moved with the torso for half a second: a
hand passing over the chest seeds corners too, and being more textured than a shirt
it would otherwise outvote it.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from service.engine import landmarks, topology, warp

#: About the height (px) of the grey copy the points are tracked on.
WORK_HEIGHT = 360
#: The chest region: from this many face heights below the chin to the frame's bottom,
#: this many face widths (eye-corner spans) either side of the face's centre.
REGION_TOP = 0.3
REGION_HALF_WIDTH = 1.6
#: Shortest chest region (face heights) worth tracking; a close-up shows less.
REGION_MIN_HEIGHT = 0.35
#: Corners sought when (re)seeding, and the fewest a torso is tracked with.
MAX_POINTS = 100
MIN_POINTS = 12
#: Re-seed when fewer than this share of the first frame's count of points are left.
RESEED_BELOW = 0.6
#: Lucas-Kanade window and pyramid; largest forward-backward error kept (work px).
LK_WINDOW = 21
LK_LEVELS = 3
FB_MAX = 0.5
#: RANSAC inlier distance (work px) and the fewest inliers a fit is taken with.
RANSAC_PX = 1.0
MIN_INLIERS = 8
#: Farthest (work px) a followed point may stray from the fitted motion and stay.
KEEP_PX = 1.5
#: Frames a re-seeded point must agree with the motion before it has a say in the fit:
#: a hand passing over the chest, more textured than a shirt, would otherwise seed more
#: corners than the shirt has and carry the torso off with it.
PROBATION = 12
#: One-Euro smoothing of (shift in face widths, angle in radians, log scale).
MIN_CUTOFF, BETA, D_CUTOFF = 1.0, 4.0, 1.0


@dataclasses.dataclass(frozen=True)
class TorsoMotion:
    """The torso's change since the first frame it was seen.

    It turned by ``angle`` degrees and scaled by ``scale`` about ``pivot`` (the middle of
    the followed points on that frame), and ``pivot`` moved by ``shift``; ``pivot`` and
    ``shift`` are in reference pixels as the tracker gives them.
    """

    shift: np.ndarray
    angle: float
    scale: float
    pivot: np.ndarray

    def affine(self) -> np.ndarray:
        """The motion as a 2x3 affine: first-frame position -> position now."""
        return similarity(self.scale, self.angle, self.pivot, self.shift)


def similarity(scale: float, angle: float, pivot: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """2x3 affine turning by ``angle`` degrees and scaling by ``scale`` about ``pivot``,
    then moving by ``shift``."""
    a = math.radians(angle)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pivot = np.asarray(pivot, dtype=np.float64)
    return np.hstack([lin, (pivot + np.asarray(shift, dtype=np.float64) - lin @ pivot)[:, None]])


@dataclasses.dataclass(frozen=True)
class _Region:
    """The chest region of one frame, in work pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    width: int
    face_width: float
    face_height: float
    #: Points above this line (and beside the chin) belong to the head, not the torso.
    chin_y: float
    chin_x0: float
    chin_x1: float

    @classmethod
    def of(cls, points: np.ndarray, scale: float, width: int, height: int) -> _Region:
        pts = points[:468, :2].astype(np.float64) * scale
        chin = pts[topology.CHIN]
        face_h = float(chin[1] - pts[topology.FOREHEAD, 1])
        face_w = landmarks.face_size(points) * scale
        centre = float(pts[:, 0].mean())
        x_span = (float(pts[:, 0].min()), float(pts[:, 0].max()))
        return cls(
            x0=int(max(0, centre - REGION_HALF_WIDTH * face_w)),
            y0=int(max(0, chin[1] + REGION_TOP * face_h)),
            x1=int(min(width, centre + REGION_HALF_WIDTH * face_w)),
            y1=height,
            width=width,
            face_width=face_w,
            face_height=max(face_h, 1.0),
            chin_y=float(chin[1] + 0.15 * face_h),
            chin_x0=x_span[0],
            chin_x1=x_span[1],
        )

    def tall_enough(self) -> bool:
        return self.y1 - self.y0 >= REGION_MIN_HEIGHT * self.face_height and self.x1 - self.x0 > 8

    def torso_points(self, pts: np.ndarray) -> np.ndarray:
        """Which of ``pts`` (N, 2) lie clear of the head and inside the frame."""
        x, y = pts[:, 0], pts[:, 1]
        under_head = (y < self.chin_y) & (x > self.chin_x0) & (x < self.chin_x1)
        return ~under_head & (x >= 0) & (y >= 0) & (x < self.width) & (y < self.y1)


class TorsoTracker:
    """Feed every frame with the performer's landmarks; get the torso's motion or None."""

    def __init__(self, fps: float) -> None:
        self._scale = 1.0
        self._prev: np.ndarray | None = None  # last grey work frame
        self._anchor = np.empty((0, 2), np.float32)  # the points on the first frame
        self._now = np.empty((0, 2), np.float32)  # the same points now
        self._age = np.empty(0, np.int32)  # frames each point has agreed with the motion
        self._seeded = 0
        self._pivot = np.zeros(2)
        self._unit = 1.0  # face width on the first frame (work px)
        self._motion = warp.IDENTITY  # anchor -> now, work px
        self._filter = landmarks.OneEuroFilter(fps, MIN_CUTOFF, BETA, D_CUTOFF)
        self._state: bool | None = None  # None: not started; False: no torso in this clip
        self._looked: np.ndarray | None = None  # the last frame tracked on
        self.reseeds = 0  # times lost points were replaced

    def __call__(self, bgr: np.ndarray, points: np.ndarray) -> TorsoMotion | None:
        """The torso's motion in frame ``bgr`` (performer's landmarks ``points``).

        The same frame again (a reference slower than the output rate shows each of its
        frames at two output instants or more) is not tracked again: nothing moved in
        it, and the smoothing alone goes on."""
        if self._state is False:
            return None
        if self._state and bgr is self._looked:
            return self._output()
        self._looked = bgr
        grey = self._grey(bgr)
        region = _Region.of(points, self._scale, grey.shape[1], grey.shape[0])
        if self._state is None:
            self._state = region.tall_enough() and self._seed(grey, region)
            if not self._state:
                return None
            self._age[:] = PROBATION  # the first frame's points define the torso
            self._prev = grey
            self._pivot = self._anchor.mean(axis=0).astype(np.float64)
            self._unit = region.face_width
            return self._output()
        self._track(grey, region)
        self._prev = grey
        return self._output()

    def _grey(self, bgr: np.ndarray) -> np.ndarray:
        """A grey copy about ``WORK_HEIGHT`` tall, reduced by a whole factor (OpenCV's area
        reduction is 3-4 times faster by a whole factor than by a fractional one)."""
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        factor = max(1, round(h / WORK_HEIGHT))
        self._scale = 1.0 / factor
        if factor == 1:
            return grey
        return cv2.resize(grey, (w // factor, h // factor), interpolation=cv2.INTER_AREA)

    def _seed(self, grey: np.ndarray, region: _Region) -> bool:
        """Find corners in the chest region (away from points already followed); add them
        with their first-frame positions. True if enough points are followed now."""
        mask = np.zeros(grey.shape, np.uint8)
        mask[region.y0 : region.y1, region.x0 : region.x1] = 255
        for x, y in self._now:
            cv2.circle(mask, (int(x), int(y)), 6, (0,), -1)
        wanted = MAX_POINTS - len(self._now)
        found = None
        if wanted > 0:
            found = cv2.goodFeaturesToTrack(grey, wanted, 0.01, 5, mask=mask, blockSize=5)
        if found is not None:
            found = found.reshape(-1, 2)
            found = found[region.torso_points(found)]
            # Back onto the first frame through the motion so far.
            anchor = warp.apply_affine(warp.invert_affine(self._motion), found)
            self._anchor = np.vstack([self._anchor, anchor.astype(np.float32)])
            self._now = np.vstack([self._now, found.astype(np.float32)])
            self._age = np.concatenate([self._age, np.zeros(len(found), np.int32)])
        if not self._seeded:
            self._seeded = len(self._now)
        return len(self._now) >= MIN_POINTS

    def _track(self, grey: np.ndarray, region: _Region) -> None:
        prev = self._prev
        if len(self._now) and prev is not None:
            before = self._now.reshape(-1, 1, 2)
            after, ok = _flow(prev, grey, before)
            back, ok_back = _flow(grey, prev, after)
            after, back = after.reshape(-1, 2), back.reshape(-1, 2)
            keep = (ok[:, 0] == 1) & (ok_back[:, 0] == 1)
            keep &= np.linalg.norm(back - self._now, axis=1) < FB_MAX
            keep &= region.torso_points(after)
            self._now = after
            self._keep(keep)
            self._fit()
        if len(self._now) < RESEED_BELOW * self._seeded:
            self.reseeds += 1
            self._seed(grey, region)

    def _fit(self) -> None:
        """The similarity anchor -> now over the established points agreeing on it
        (RANSAC); then every point that strays from it by more than ``KEEP_PX`` is
        dropped (background, the chin, a hand passing) and the rest age by a frame."""
        voters = self._age >= PROBATION
        if int(voters.sum()) >= MIN_INLIERS:
            motion, inliers = cv2.estimateAffinePartial2D(
                self._anchor[voters],
                self._now[voters],
                method=cv2.RANSAC,
                ransacReprojThreshold=RANSAC_PX,
                refineIters=10,
            )
            if motion is not None and inliers is not None and int(inliers.sum()) >= MIN_INLIERS:
                self._motion = np.asarray(motion, dtype=np.float64)
        # Otherwise the last motion holds until enough points have earned a say.
        predicted = warp.apply_affine(self._motion, self._anchor)
        self._keep(np.linalg.norm(predicted - self._now, axis=1) <= KEEP_PX)
        self._age += 1

    def _keep(self, keep: np.ndarray) -> None:
        self._anchor, self._now, self._age = self._anchor[keep], self._now[keep], self._age[keep]

    def _output(self) -> TorsoMotion:
        lin = self._motion[:, :2]
        moved = lin @ self._pivot + self._motion[:, 2] - self._pivot
        angle = math.atan2(lin[1, 0], lin[0, 0])
        scale = math.hypot(lin[0, 0], lin[1, 0])
        raw = np.array([moved[0] / self._unit, moved[1] / self._unit, angle, math.log(scale)])
        shift_x, shift_y, angle, log_scale = self._filter(raw)
        to_ref = 1.0 / self._scale
        return TorsoMotion(
            shift=np.array([shift_x, shift_y]) * self._unit * to_ref,
            angle=math.degrees(angle),
            scale=math.exp(log_scale),
            pivot=self._pivot * to_ref,
        )


def _flow(a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where points ``pts`` (N, 1, 2) of grey frame ``a`` went in ``b``, and which were found."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
    window = (LK_WINDOW, LK_WINDOW)
    moved, found, _ = cv2.calcOpticalFlowPyrLK(
        a, b, pts, None, winSize=window, maxLevel=LK_LEVELS, criteria=criteria
    )  # type: ignore[call-overload]
    return np.asarray(moved), np.asarray(found)
