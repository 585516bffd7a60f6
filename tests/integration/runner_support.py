"""Shared helpers for the runner tests: small inputs as data URIs, task reads, events."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import sqlalchemy as sa

from service import intake
from service import models as m
from tests.engine import clips


def data_uri(path: pathlib.Path, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(path.read_bytes()).decode()


def short_reference(directory: pathlib.Path) -> pathlib.Path:
    """3.2 s of the expressive driver at 256x256: the quickest valid reference."""
    target = directory / "reference.mp4"
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        clips.cut(clips.MEDIA / "driving_expressive.mp4", target, 0.5, 3.2, size=(256, 256))
    return target


def body(character: pathlib.Path, reference: pathlib.Path, **extra: Any) -> dict[str, Any]:
    return {
        "model": "act_two",
        "character": {"type": "image", "uri": data_uri(character, "image/jpeg")},
        "reference": {"type": "video", "uri": data_uri(reference, "video/mp4")},
        "seed": 5,
        **extra,
    }


def remote_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "act_two",
        "character": {"type": "image", "uri": "https://cdn.example.com/character.jpg"},
        "reference": {"type": "video", "uri": "https://cdn.example.com/reference.mp4"},
        "seed": 9,
        **extra,
    }


async def create(db: Any, rt: Any, account: dict[str, Any], payload: dict[str, Any]) -> str:
    result = await intake.create_task(db, rt, account=account, body=payload)
    return str(result.row.id)


def task(db: Any, task_id: str) -> Any:
    return db.read_sync(lambda conn: conn.execute(sa.select(m.tasks).where(m.tasks.c.id == task_id)).one())


def event_types(db: Any, task_id: str) -> list[str]:
    e = m.events
    return db.read_sync(
        lambda conn: [
            r.type
            for r in conn.execute(sa.select(e.c.type).where(e.c.task_id == task_id).order_by(e.c.sequence))
        ]
    )


def probe_mp4(path: pathlib.Path) -> tuple[int, int, float]:
    """``(width, height, fps)`` of a video file, read with PyAV (proves it decodes)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert frames > 0
        return stream.codec_context.width, stream.codec_context.height, float(stream.average_rate or 0)
