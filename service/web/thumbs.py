"""Small JPEG thumbnails of a task (its output's first frame, else its character).

Made on first request from the stored file and cached in storage under
``thumbs/<task id>/<source>.jpg``; an input that cannot be decoded has no thumbnail
(the page shows a placeholder) rather than an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from service import storage, tasks
from service.db import Database
from service.engine import assets, video
from service.media import refs
from service.runtime import Runtime
from service.web import queries

log = logging.getLogger(__name__)
WIDTH = 240
QUALITY = 80


def _first_frame(path: Path) -> np.ndarray | None:
    """The picture, or the video's first frame, as the render shows it (upright, a
    transparent picture over mid-grey); None if it cannot be decoded."""
    with contextlib.suppress(Exception):  # undecodable: no thumbnail
        if assets.picture_format(path) is not None:
            return assets.load_image(path)
        return next(video.iter_frames(path, 1, 1), None)
    return None


def make(path: Path, width: int = WIDTH) -> bytes | None:
    """A JPEG ``width`` pixels wide of the image or the video's first frame (None: undecodable)."""
    image = _first_frame(path)
    if image is None:
        return None
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return encoded.tobytes() if ok else None


def _source(conn: Any, account_id: str, row: Any, store: storage.LocalStorage) -> tuple[str, Any] | None:
    """``(name, path-or-bytes)`` to make the thumbnail from, or None."""
    if row.status == "SUCCEEDED" and row.output_keys and row.output_expired_at is None:
        local = store.local_path(row.output_keys[0])
        if local is not None and local.exists():
            return "output", local
    uri = tasks.get_spec(conn, row.id)["character"]["uri"]
    try:
        ref = refs.classify(uri)
    except ValueError:
        return None
    if ref.kind in ("asset", "upload") and ref.asset_id is not None:
        try:
            asset = queries.input_asset(conn, account_id, ref.asset_id)
        except Exception:
            return None
        local = store.local_path(asset.storage_key)
        return ("character", local) if local is not None and local.exists() else None
    if ref.kind == "data":
        try:
            return "character", base64.b64decode(uri[uri.index(",") + 1 :])
        except ValueError:
            return None
    return None


async def thumbnail(db: Database, rt: Runtime, account_id: str, task_id: str) -> bytes | None:
    """The task's thumbnail JPEG (cached), or None when there is nothing to show."""
    store = storage.from_settings(rt.settings)

    def unit(conn: Any) -> tuple[str, Any] | None:
        row = tasks.get(conn, account_id, task_id)
        return _source(conn, account_id, row, store)

    found = await db.read(unit)
    if found is None:
        return None
    name, source = found
    key = f"thumbs/{task_id}/{name}.jpg"
    cached = store.local_path(key)
    if cached is not None and cached.exists():
        return await asyncio.to_thread(cached.read_bytes)
    return await asyncio.to_thread(_build_and_store, store, key, source)


def _build_and_store(store: storage.LocalStorage, key: str, source: Any) -> bytes | None:
    if isinstance(source, bytes):
        with tempfile.NamedTemporaryFile(suffix=".bin") as tmp:
            tmp.write(source)
            tmp.flush()
            data = make(Path(tmp.name))
    else:
        data = make(source)
    if data is None:
        return None
    try:
        with store.writer(key) as out:
            out.write(data)
    except OSError as exc:  # a cache miss next time is fine
        log.warning("could not cache thumbnail %s: %s", key, exc)
    return data
