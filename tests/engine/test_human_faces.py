"""Only human-like faces are animated: a face FaceMesh finds must be one to the
short-range face detector too, shown it upright at its own input size."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable

import numpy as np
import pytest

from service import engine
from service.engine import assets, character, landmarks
from tests.engine import clips


@pytest.mark.parametrize(
    ("side", "size"),
    [
        (512, (512, 512)),
        (250, (1280, 720)),
        (400, (1280, 720)),
        (200, (640, 360)),
        (175, (854, 480)),
        (512, (2048, 512)),
    ],
    ids=["alone", "small-in-720p", "large-in-720p", "in-360p", "in-480p", "in-a-banner"],
)
def test_a_dog_is_no_face_wherever_it_is_placed(
    media: pathlib.Path, side: int, size: tuple[int, int]
) -> None:
    """FaceMesh alone fitted its mesh to the dog's face once its picture was placed on a
    wider one (all but the first two here)."""
    dog = assets.load_image(media / "character_dog.jpg")
    assert character.find_face(clips.placed(dog, side, size=size, grey=128)) is None


def test_each_judge_alone_would_let_the_dog_through_somewhere(media: pathlib.Path) -> None:
    """Placed in the middle of a 1280x720 picture, 400 px, the dog is a face to the
    short-range detector (0.75) but not to the landmark model's flag; at 175 px on an
    854x480 one, the other way round (0.85). Only both together refuse it everywhere."""
    import cv2

    dog = assets.load_image(media / "character_dog.jpg")
    with landmarks.FaceTracker(video=False) as tracker:
        judge = landmarks.solutions().face_detection.FaceDetection(model_selection=0)
        flag = landmarks._FaceFlag()
        for side, size, detector_passes in ((400, (1280, 720), True), (175, (854, 480), False)):
            picture = clips.placed(dog, side, size=size, grey=128)
            points = tracker.detect(picture)
            assert points is not None  # FaceMesh alone takes it for a face
            upright = landmarks._upright(picture, points, landmarks.HUMAN_CROP, landmarks.HUMAN_SIDE)
            found = judge.process(cv2.cvtColor(upright, cv2.COLOR_BGR2RGB)).detections or []
            score = max((d.score[0] for d in found), default=0.0)
            presence = flag(landmarks._upright(picture, points, landmarks.FLAG_CROP, landmarks.FLAG_SIDE))
            assert (score >= landmarks.HUMAN_SCORE) is detector_passes
            assert (presence >= landmarks.HUMAN_FLAG) is not detector_passes
            assert not tracker.looks_human(picture, points)
        judge.close()


def _turned(picture: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = picture.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(picture, turn, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: assets.load_image(m / "character_photo.jpg"),
        lambda m: assets.load_image(m / "character_cartoon.jpg"),
        lambda m: clips.placed(assets.load_image(m / "character_photo.jpg"), 200, grey=128),
        lambda m: _turned(assets.load_image(m / "character_photo.jpg"), 30),
        lambda m: _turned(assets.load_image(m / "character_cartoon.jpg"), -30),
        lambda m: (assets.load_image(m / "character_photo.jpg") * 0.35).astype(np.uint8),
    ],
    ids=["photo", "cartoon", "photo-small", "photo-turned", "cartoon-turned", "photo-dark"],
)
def test_human_and_drawn_faces_look_human(
    media: pathlib.Path, make: Callable[[pathlib.Path], np.ndarray]
) -> None:
    picture = make(media)
    with landmarks.FaceTracker(video=False) as tracker:
        points = tracker.detect(picture)
        assert points is not None
        assert tracker.looks_human(picture, points)


def test_a_face_off_the_picture_does_not_look_human() -> None:
    """Landmarks wholly outside the picture (a caller's mistake) give a grey square, not
    an error."""
    picture = np.full((100, 100, 3), 128, np.uint8)
    points = np.zeros((478, 3), np.float32) + [500, 500, 0]
    points[:, :2] += np.random.default_rng(0).uniform(0, 80, (478, 2))
    with landmarks.FaceTracker(video=False) as tracker:
        assert not tracker.looks_human(picture, points)


@pytest.mark.parametrize("at", [(-0.3, -0.3), (0.5, 0.5), (0.9, 0.2)])
def test_a_window_larger_than_the_picture_is_shrunk_before_it_is_bordered(
    monkeypatch: pytest.MonkeyPatch, at: tuple[float, float]
) -> None:
    """A face filling a 6000 px photo has a judge's window larger than the photo: it is
    shrunk to the crop's size first and bordered there (bordering it at full size took
    180 MB and 0.6 s), for what bordering first gives, within a grey level on average."""
    import cv2

    rng = np.random.default_rng(5)
    picture = cv2.resize(
        rng.integers(0, 256, (12, 8, 3), dtype=np.uint8), (1200, 1800), interpolation=cv2.INTER_CUBIC
    )
    window = (1200 * at[0], 1800 * at[1], 2500.0)
    sizes: list[tuple[int, ...]] = []
    border = cv2.copyMakeBorder

    def counted(part: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        sizes.append(part.shape)
        return border(part, *args, **kwargs)

    monkeypatch.setattr(cv2, "copyMakeBorder", counted)
    square = landmarks._square(picture, window, 192, (128, 128, 128))
    assert square is not None
    part, scale, origin = square
    assert part.shape == (192, 192, 3) and scale == 192 / 2500 and all(max(s[:2]) <= 192 for s in sizes)
    monkeypatch.undo()
    x0, y0 = int(np.floor(window[0] - 1250)), int(np.floor(window[1] - 1250))
    assert origin == (float(x0), float(y0))
    full = np.full((2500, 2500, 3), 128, np.uint8)
    ys, xs = slice(max(0, y0), y0 + 2500), slice(max(0, x0), x0 + 2500)
    inside = picture[ys, xs]
    full[max(0, -y0) : max(0, -y0) + inside.shape[0], max(0, -x0) : max(0, -x0) + inside.shape[1]] = inside
    expected = cv2.resize(full, (192, 192), interpolation=cv2.INTER_AREA)
    assert np.abs(part.astype(int) - expected).mean() < 1.0


@pytest.fixture(scope="module")
def dog_clip(tmp_path_factory: pytest.TempPathFactory, media: pathlib.Path) -> pathlib.Path:
    dog = clips.placed(assets.load_image(media / "character_dog.jpg"), 200, size=(640, 360), grey=128)
    path = tmp_path_factory.mktemp("dog") / "dog.mp4"
    return clips.encode(path, itertools.repeat(dog, 84), (640, 360), 24)


@pytest.mark.parametrize("role", ["character", "reference"])
def test_a_dog_video_fails_cleanly_as_character_and_as_reference(
    tmp_path: pathlib.Path, media: pathlib.Path, reference: pathlib.Path, dog_clip: pathlib.Path, role: str
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    request = engine.RenderRequest(
        character_path=dog_clip if role == "character" else media / "character_photo.jpg",
        character_type="video" if role == "character" else "image",
        reference_path=reference if role == "character" else dog_clip,
        output_path=out_dir / "o.mp4",
    )
    with pytest.raises(engine.EngineError) as err:
        engine.render(request)
    assert err.value.failure_code == "ASSET.INVALID"
    expected = "No human-like face was found" if role == "character" else "No face was found in the reference"
    assert err.value.message.startswith(expected)
    assert list(out_dir.iterdir()) == []


def test_the_face_flag_models_are_imported_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV's TFLite importer fills its table of operators unguarded on first use: two
    imports at once in a fresh process could refuse FaceMesh's model ("Unsupported
    operator type PRELU"). A render's character check and its rest scan, on two
    threads, each make a flag; the imports take turns."""
    import threading
    import time

    import cv2

    real = cv2.dnn.readNetFromTFLite
    inside, most, count = 0, 0, threading.Lock()

    def watched(path: str) -> object:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        try:
            return real(path)
        finally:
            with count:
                inside -= 1

    monkeypatch.setattr(cv2.dnn, "readNetFromTFLite", watched)
    start = threading.Barrier(4)
    flags: list[landmarks._FaceFlag] = []

    def make() -> None:
        start.wait()
        flags.append(landmarks._FaceFlag())

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(flags) == 4
    assert most == 1
