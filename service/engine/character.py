"""The character side of a render: a still picture or a video, framed on the canvas.

Both kinds yield one ``CharacterFrame`` per output frame: the framed canvas, its face
landmarks, its warp rig, the person mask and what to show behind the person. A still is
analysed once (face, segmentation, clean background plate) and repeats; a video is
decoded frame by frame (looping if shorter than the reference) and its face tracked in
every frame, so its own scene and camera motion are kept.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator

import numpy as np

from service.engine import composite, contracts, framing, landmarks, rig, video

NO_FACE = "No human-like face was found in the character {kind}."
#: Longest side used to look for the face in a picture (detector input is small anyway).
DETECT_MAX_SIDE = 1280
#: How many opening frames of a character video may be searched for a face.
VIDEO_SEARCH_FRAMES = 24


@dataclasses.dataclass(frozen=True)
class CharacterFrame:
    """One frame of the character, ready to be animated.

    ``base`` is what the output shows where nothing moves; ``background`` what shows
    where the person moved away from; ``mask`` the soft person mask of ``canvas``.
    """

    canvas: np.ndarray
    points: np.ndarray
    rig: rig.Rig
    mask: np.ndarray
    background: np.ndarray
    base: np.ndarray


def load_image(path: pathlib.Path) -> np.ndarray:
    """Decode a picture to BGR (EXIF orientation applied, transparency over mid-grey)."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise contracts.asset_invalid("The character image could not be decoded.")
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255
        image = (image[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)
        # IMREAD_UNCHANGED skips EXIF rotation; PNG/WebP with alpha rarely carry it.
        return np.ascontiguousarray(image)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)  # re-decode to apply EXIF orientation


def find_face(image: np.ndarray) -> np.ndarray | None:
    """Face landmarks of a still picture in its own pixels, or None."""
    import cv2

    h, w = image.shape[:2]
    factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = (
        cv2.resize(image, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_AREA)
        if factor < 1
        else image
    )
    with landmarks.FaceTracker(video=False) as tracker:
        points = tracker.detect(small)
    return None if points is None else points / factor


class StillCharacter:
    """A character picture: analysed once, the same frame for the whole render."""

    def __init__(
        self, path: pathlib.Path, width: int, height: int, step: Callable[[], None] = lambda: None
    ) -> None:
        """Analyse the picture; ``step()`` runs between stages (progress, cancellation)."""
        image = load_image(path)
        points = find_face(image)
        if points is None:
            raise contracts.asset_invalid(NO_FACE.format(kind="image"))
        step()
        fr = framing.choose(image.shape[1], image.shape[0], points, width, height)
        canvas = framing.render(image, fr)
        points = fr.to_canvas(points)
        with landmarks.Segmenter() as seg:
            mask = composite.person_mask(seg.mask(canvas), points)
        step()
        plate = composite.clean_plate(canvas, mask)
        step()
        base = composite.blend_person(canvas, plate, mask)
        self.frame = CharacterFrame(
            canvas=canvas,
            points=points,
            rig=rig.Rig(points, width, height, composite.mask_box(mask)),
            mask=mask,
            background=plate,
            base=base,
        )

    def frames(self) -> Iterator[CharacterFrame]:
        while True:
            yield self.frame


class VideoCharacter:
    """A character video: framed once (from its opening face), tracked every frame."""

    def __init__(
        self,
        path: pathlib.Path,
        width: int,
        height: int,
        count: int,
        fps: int,
        step: Callable[[], None] = lambda: None,
    ) -> None:
        """Find the face in the opening frames; ``step()`` runs between frames."""
        self._path, self._w, self._h, self._count, self._fps = path, width, height, count, fps
        first_face = None
        first_shape = None
        with landmarks.FaceTracker(video=False) as tracker:
            for i, frame in enumerate(video.iter_frames(path, fps, VIDEO_SEARCH_FRAMES)):
                step()
                first_shape = frame.shape
                if i % 4 == 0:
                    first_face = tracker.detect(frame)
                    if first_face is not None:
                        break
        if first_face is None or first_shape is None:
            raise contracts.asset_invalid(NO_FACE.format(kind="video"))
        self._framing = framing.choose(first_shape[1], first_shape[0], first_face, width, height)

    def frames(self) -> Iterator[CharacterFrame]:
        import cv2

        tracker = landmarks.FaceTracker(video=True)
        seg = landmarks.Segmenter()
        smoother: landmarks.OneEuroFilter | None = None
        last: np.ndarray | None = None
        try:
            for frame in video.iter_frames(self._path, self._fps, self._count, loop=True):
                canvas = framing.render(frame, self._framing)
                found = tracker.detect(canvas)
                if found is not None:
                    if smoother is None:  # smooth in face widths of the first tracked face
                        unit = landmarks.face_size(found)
                        smoother = landmarks.OneEuroFilter(self._fps, min_cutoff=1.0, beta=2.0)
                    last = smoother(found / unit) * unit
                if last is None:  # no face yet: show the frame as it is
                    yield _passthrough(canvas)
                    continue
                half = cv2.resize(canvas, (self._w // 2, self._h // 2), interpolation=cv2.INTER_AREA)
                mask = composite.person_mask(seg.mask(half), last, (self._h, self._w))
                yield CharacterFrame(
                    canvas=canvas,
                    points=last,
                    rig=rig.Rig(last, self._w, self._h, composite.mask_box(mask)),
                    mask=mask,
                    background=canvas,
                    base=canvas,
                )
        finally:
            tracker.close()
            seg.close()


def _passthrough(canvas: np.ndarray) -> CharacterFrame:
    return CharacterFrame(
        canvas=canvas,
        points=np.empty((0, 3), np.float32),
        rig=None,  # type: ignore[arg-type]
        mask=np.zeros(canvas.shape[:2], np.float32),
        background=canvas,
        base=canvas,
    )
