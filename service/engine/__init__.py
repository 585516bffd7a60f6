"""Callboard's embedded offline engine: character performance on a CPU, no network.

A driving video of a person acting (the *reference*) and a *character* picture or video
go in; a 24 fps H.264 MP4 in which the character performs that acting comes out. The
engine is landmark-driven 2.5D animation (MediaPipe FaceMesh + piecewise-affine warp),
see ``pipeline`` for the order of work.

Importing this package is cheap (no MediaPipe, OpenCV or PyAV until a render or probe
runs), so it can be imported by the API and inside spawned worker processes.
"""

from service.engine.assets import probe
from service.engine.contracts import (
    RATIOS,
    EngineError,
    MediaInfo,
    RenderCancelled,
    RenderRequest,
    RenderResult,
)
from service.engine.pipeline import preload, render

__all__ = [
    "RATIOS",
    "EngineError",
    "MediaInfo",
    "RenderCancelled",
    "RenderRequest",
    "RenderResult",
    "preload",
    "probe",
    "render",
]
