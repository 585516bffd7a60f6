"""The engine's public value types and exceptions.

Everything here is plain data with no heavy imports, so the API and the worker can import
`service.engine` cheaply (and inside a freshly spawned subprocess) before any frame is
touched.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

#: Output sizes for the Runway ``ratio`` values, as (width, height).
RATIOS: dict[str, tuple[int, int]] = {
    "1280:720": (1280, 720),
    "720:1280": (720, 1280),
    "960:960": (960, 960),
    "1104:832": (1104, 832),
    "832:1104": (832, 1104),
    "1584:672": (1584, 672),
}

#: Output frame rate; every render is resampled to it.
OUTPUT_FPS = 24

#: Accepted reference length in seconds (inclusive), as Runway's Act-Two documents it.
MIN_REFERENCE_S = 3.0
MAX_REFERENCE_S = 30.0


#: Bytes of the destination's name kept in its temporary file's name: with the dot, the
#: process id and ``.partial`` it stays within the 255 bytes a file system allows a name.
PARTIAL_NAME_BYTES = 200


def partial_path(output: pathlib.Path, pid: int) -> pathlib.Path:
    """Where process ``pid`` writes the render of ``output`` before moving it into place:
    beside it (so the move is atomic), hidden, its name the destination's, shortened as
    far as ``PARTIAL_NAME_BYTES`` (a legal 250-byte name would otherwise make the
    temporary name too long, and the render fail only once it started writing)."""
    name = output.name.encode()[:PARTIAL_NAME_BYTES].decode(errors="ignore")
    return output.with_name(f".{name}.{pid}.partial")


@dataclasses.dataclass(frozen=True)
class RenderRequest:
    """One render job.

    ``output_path`` is written atomically (temp file in the same directory, then
    ``os.replace``), so a reader never sees a half-written video.
    """

    character_path: pathlib.Path
    character_type: Literal["image", "video"]
    reference_path: pathlib.Path
    output_path: pathlib.Path
    ratio: str = "1280:720"
    expression_intensity: int = 3
    body_control: bool = True
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """What was written: always ``fps`` 24 and the exact size of the requested ratio."""

    width: int
    height: int
    fps: int
    frames: int
    duration_s: float
    has_audio: bool


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """Container-level facts about an image or video, read without decoding it fully.

    ``duration_s`` and ``fps`` are None for images; ``codec`` is None for images.
    """

    kind: Literal["image", "video"]
    format: str
    codec: str | None
    width: int
    height: int
    duration_s: float | None
    fps: float | None
    has_audio: bool


class EngineError(Exception):
    """A clean, user-facing render failure.

    ``failure_code`` uses Runway's vocabulary: ``ASSET.INVALID`` when an input is at
    fault (undecodable, unsupported, no human-like face, reference of the wrong length,
    driver face lost), ``INTERNAL`` for anything unexpected. ``message`` is a sentence
    fit to show to the API caller.
    """

    def __init__(self, failure_code: str, message: str) -> None:
        super().__init__(message)
        self.failure_code = failure_code
        self.message = message

    def __reduce__(self) -> tuple[type[EngineError], tuple[str, str]]:
        # Keeps the two fields when the error crosses a multiprocessing boundary.
        return (type(self), (self.failure_code, self.message))


class RenderCancelled(Exception):
    """Raised by ``render`` when ``should_cancel()`` returned True; no output is left."""


def asset_invalid(message: str) -> EngineError:
    """The error for a bad input (the caller's fault, not retryable)."""
    return EngineError("ASSET.INVALID", message)
