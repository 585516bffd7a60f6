"""Fixtures for the engine tests: short clips cut from the shared media, shared renders.

Renders are the expensive part (~3-5 s each), so clips are short (3.5 s, small frames)
and renders several tests inspect are made once per session.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable

import pytest

from service import engine
from tests.engine import clips


@pytest.fixture(scope="session")
def media() -> pathlib.Path:
    if not (clips.MEDIA / "driving_expressive.mp4").exists():
        pytest.skip(f"shared test media not found at {clips.MEDIA} (set CALLBOARD_TEST_MEDIA)")
    return clips.MEDIA


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("engine-clips")


@pytest.fixture(scope="session")
def reference(media: pathlib.Path, clip_dir: pathlib.Path) -> pathlib.Path:
    """3.5 s of the expressive driver (a wink, an open mouth, a head tilt), 256x256, 30 fps."""
    return clips.cut(media / "driving_expressive.mp4", clip_dir / "reference.mp4", 0.5, 3.5, size=(256, 256))


@pytest.fixture(scope="session")
def short_character_video(media: pathlib.Path, clip_dir: pathlib.Path) -> pathlib.Path:
    """1.5 s of the character video at 640x360: shorter than the reference, so it must play on
    past its end."""
    return clips.cut(
        media / "character_video.mp4",
        clip_dir / "character_short.mp4",
        0.0,
        1.5,
        size=(640, 360),
        audio=False,
    )


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A finished render with the progress values it reported (time, value)."""

    result: engine.RenderResult
    path: pathlib.Path
    progress: list[tuple[float, float]]


Render = Callable[..., Rendered]

DEFAULTS = {"ratio": "1280:720", "expression_intensity": 3, "body_control": True, "seed": 0}


def photo_request(
    media: pathlib.Path, reference: pathlib.Path, out: pathlib.Path, **options: object
) -> engine.RenderRequest:
    """A request to render the shared photo (declared an image unless ``character_type``
    says otherwise) performing ``reference`` into ``out``."""
    fields: dict[str, object] = {"character_type": "image", **options}
    return engine.RenderRequest(
        character_path=media / "character_photo.jpg",
        reference_path=reference,
        output_path=out,
        **fields,  # type: ignore[arg-type]
    )


def video_request(
    character: pathlib.Path, reference: pathlib.Path, out: pathlib.Path, ratio: str = "1280:720"
) -> engine.RenderRequest:
    """A request to render the character video ``character`` performing ``reference``."""
    return engine.RenderRequest(
        character_path=character,
        character_type="video",
        reference_path=reference,
        output_path=out,
        ratio=ratio,
    )


@pytest.fixture(scope="session")
def render_once(
    tmp_path_factory: pytest.TempPathFactory, reference: pathlib.Path, media: pathlib.Path
) -> Render:
    """Render the photo character with the given request overrides, once per session.

    Overrides equal to the defaults share a render (``render_once(seed=0)`` is
    ``render_once()``), which keeps the suite within its time budget.
    """
    out_dir = tmp_path_factory.mktemp("engine-renders")
    done: dict[tuple[tuple[str, object], ...], Rendered] = {}

    def run(**overrides: object) -> Rendered:
        options = {**DEFAULTS, **overrides}
        key = tuple(sorted(options.items()))
        if key not in done:
            path = out_dir / f"render{len(done)}.mp4"
            progress: list[tuple[float, float]] = []
            result = engine.render(
                photo_request(media, reference, path, **options),
                progress=lambda p: progress.append((time.monotonic(), p)),
            )
            done[key] = Rendered(result=result, path=path, progress=progress)
        return done[key]

    return run
