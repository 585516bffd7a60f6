"""Outputs: local renders and re-hosted provider results, stored and recorded.

Runway's output URLs expire within 24–48 h, so with ``CALLBOARD_REHOST_OUTPUTS`` on
(the default) the worker copies them here as soon as a task succeeds; tasks and
webhooks then carry Callboard's own signed links (``links.file_url`` for each key in
``tasks.output_keys``), which retention later expires on Callboard's schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from service import storage
from service.db import Database
from service.media import assets, fetch, validation
from service.runtime import Runtime

#: Largest provider output Callboard downloads (a 30 s clip is a few tens of MB).
OUTPUT_MAX_BYTES = 512 * 1024 * 1024
_OUTPUT_EXTENSIONS = (".mp4", ".mov", ".webm", ".jpg", ".png", ".webp")


def _output_row(
    rt: Runtime,
    asset_id: str,
    *,
    account_id: str,
    task_id: str,
    key: str,
    size: int,
    sha256: str | None = None,
) -> dict[str, Any]:
    """The ``assets`` row of a stored output (carries its retention deadline)."""
    return assets.row(
        rt,
        asset_id=asset_id,
        kind="output",
        account_id=account_id,
        task_id=task_id,
        now=rt.now(),
        filename=key.rsplit("/", 1)[-1],
        content_type=validation.content_type_for_path(Path(key)),
        size=size,
        sha256=sha256,
        storage_key=key,
    )


def output_key(task_id: str, asset_id: str, extension: str) -> str:
    return f"outputs/{task_id}/{asset_id}{extension}"


async def store_output(db: Database, rt: Runtime, *, account_id: str, task_id: str, path: Path) -> str:
    """Move a finished render into storage and record it; return its storage key.

    The file is moved (renamed when on the same disk), so ``path`` is gone afterwards.
    The asset row (kind ``output``) carries the retention deadline. Put the key in
    ``tasks.output_keys`` in the same transition that marks the task SUCCEEDED.
    """
    store = storage.from_settings(rt.settings)
    asset_id = assets.new_id()
    extension = path.suffix.lower() if path.suffix.lower() in _OUTPUT_EXTENSIONS else ".mp4"
    key = output_key(task_id, asset_id, extension)
    stat = await asyncio.to_thread(store.put_file, key, path, move=True)
    row = _output_row(rt, asset_id, account_id=account_id, task_id=task_id, key=key, size=stat.size)
    try:
        await db.write(lambda conn: assets.insert(conn, [row]))
    except BaseException:
        store.delete(key)
        raise
    return key


def _extension_for(url: str, content_type: str | None) -> str:
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    if suffix in _OUTPUT_EXTENSIONS:
        return suffix
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return validation.EXTENSIONS.get(media_type, ".mp4")


async def rehost(
    db: Database, rt: Runtime, http: httpx.AsyncClient, *, account_id: str, task_id: str, urls: list[str]
) -> list[str]:
    """Download a provider's output URLs into storage; return their keys, in order.

    Returns ``[]`` without downloading when ``CALLBOARD_REHOST_OUTPUTS`` is off (keep
    the upstream URLs in ``tasks.upstream_output`` then). Same safety as input fetches:
    SSRF guard, no redirects, a deadline and a size cap, streamed straight into storage.
    Raises :class:`validation.MediaError` (``INTERNAL``; ``retryable`` when the provider's
    CDN may recover) and leaves nothing stored when any URL fails.
    """
    if not rt.settings.rehost_outputs or not urls:
        return []
    store = storage.from_settings(rt.settings)
    keys: list[str] = []
    rows = []
    try:
        for url in urls:
            asset_id = assets.new_id()
            staging = output_key(task_id, asset_id, ".part")
            with store.writer(staging) as writer:
                size, content_type = await fetch.download(
                    http,
                    url,
                    writer,
                    allow=rt.allow,
                    cap=OUTPUT_MAX_BYTES,
                    timeout=rt.settings.fetch_timeout,
                    label="output",
                )
            key = output_key(task_id, asset_id, _extension_for(url, content_type))
            local_staging = store.local_path(staging)
            assert local_staging is not None
            await asyncio.to_thread(store.put_file, key, local_staging, move=True)
            keys.append(key)
            rows.append(
                _output_row(
                    rt,
                    asset_id,
                    account_id=account_id,
                    task_id=task_id,
                    key=key,
                    size=size,
                    sha256=writer.sha256,
                )
            )
        await db.write(lambda conn: assets.insert(conn, rows))
    except BaseException as exc:
        for key in keys:
            with contextlib.suppress(OSError):
                store.delete(key)
        if isinstance(exc, validation.MediaError):
            message = exc.message.replace("The output URL", "The provider's output URL", 1)
            raise validation.MediaError("INTERNAL", message, retryable=exc.retryable) from None
        raise
    return keys
