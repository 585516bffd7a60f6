"""Inputs for the worker: local files for the engine, URIs a remote provider accepts.

:func:`fetch_input` turns a stored spec's ``{"type", "uri"}`` into a validated file in
the task's work directory; :func:`provider_uri` turns it into what Runway accepts (the
HTTPS URL as is, a data URI within Runway's limits, else Runway's own upload API via the
provider's ``upload`` callback), so Callboard-hosted files work with the real Runway too.
The engine itself never touches the network: every byte it reads was fetched here.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from service import storage
from service.db import Database
from service.media import assets, fetch, refs, validation
from service.runtime import Runtime

Upload = Callable[[Path, str], Awaitable[str]]
_TASK_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def work_dir(rt: Runtime, task_id: str) -> Path:
    """The task's scratch directory (``<data dir>/work/<task id>``); not created here."""
    if not _TASK_ID.match(task_id):
        raise ValueError(f"invalid task id {task_id!r}")
    return rt.settings.data_dir / "work" / task_id


def cleanup_work(rt: Runtime, task_id: str) -> None:
    """Remove the task's scratch directory and everything in it (idempotent)."""
    shutil.rmtree(work_dir(rt, task_id), ignore_errors=True)


def _existing(directory: Path, role: str) -> Path | None:
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"{role}.*")):
        if path.is_file():
            return path
    return None


def _decode_data_uri(uri: str, target: Path, role: str, declared: str) -> None:
    cap = validation.data_uri_cap(declared)
    if len(uri) > cap * 4 // 3 + 1024:
        raise validation.invalid(f"The {role} data URI is larger than the {validation.mb(cap)} allowed.")
    try:
        raw = base64.b64decode(uri[uri.index(",") + 1 :], validate=True)
    except ValueError:
        raise validation.invalid(f"The {role} data URI is not valid base64.") from None
    target.write_bytes(raw)


async def _copy_asset(
    db: Database, rt: Runtime, account_id: str, ref: refs.Ref, role: str, target: Path
) -> None:
    asset_id = ref.asset_id
    assert asset_id is not None
    row = await db.read(lambda conn: assets.get(conn, account_id, asset_id))
    what = "upload" if ref.kind == "upload" else "stored input"
    if row is None or row.storage_key is None:
        raise validation.invalid(f"The {role} {what} no longer exists (files are kept for a limited time).")
    store = storage.from_settings(rt.settings)
    local = store.local_path(row.storage_key)
    try:
        if local is not None:
            await asyncio.to_thread(storage.copy_or_link, local, target)
        else:  # pragma: no cover - remote backends
            await asyncio.to_thread(_stream_to, store, row.storage_key, target)
    except FileNotFoundError:
        raise validation.invalid(
            f"The {role} {what} no longer exists (files are kept for a limited time)."
        ) from None


def _stream_to(store: storage.Storage, key: str, target: Path) -> None:  # pragma: no cover
    with target.open("wb") as out:
        for chunk in store.iter_chunks(key):
            out.write(chunk)


async def fetch_input(
    db: Database,
    rt: Runtime,
    http: httpx.AsyncClient,
    *,
    account_id: str,
    task_id: str,
    role: str,
    ref: dict[str, Any],
) -> Path:
    """A validated local copy of one input, under :func:`work_dir` as ``<role>.<ext>``.

    Idempotent: a file already there was validated before it was renamed into place,
    so it is returned as is (a retried task does not download twice). Raises
    :class:`validation.InputError` (``ASSET.INVALID``; ``retryable`` for transient
    network failures) with the sentence a user sees.
    """
    if role not in validation.ROLES:
        raise ValueError(f"unknown role {role!r}")
    declared = str(ref.get("type"))
    directory = work_dir(rt, task_id)
    found = _existing(directory, role)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    try:
        parsed = refs.classify(str(ref.get("uri", "")))
    except ValueError as exc:
        raise validation.invalid(f"The {role} reference is not usable ({exc}).") from None
    tmp = directory / f".{role}.{uuid.uuid4().hex}.part"
    try:
        if parsed.kind in ("asset", "upload"):
            await _copy_asset(db, rt, account_id, parsed, role, tmp)
        elif parsed.kind == "data":
            await asyncio.to_thread(_decode_data_uri, parsed.uri, tmp, role, declared)
        elif parsed.kind == "https":
            with tmp.open("wb") as out:
                await fetch.download(
                    http,
                    parsed.uri,
                    out,
                    allow=rt.allow,
                    cap=validation.url_cap(declared),
                    timeout=rt.settings.fetch_timeout,
                    label=role,
                    declared=declared,
                    cap_text=f"the {validation.mb(validation.url_cap(declared))} allowed for "
                    f"{'an image' if declared == 'image' else 'a video'} by URL",
                )
        else:
            raise validation.invalid(
                f"The {role} upload {parsed.uri} is not known to this server; upload it with POST /v1/uploads."
            )
        info = await validation.validate(tmp, role, declared)
        final = directory / f"{role}{validation.extension_of(info)}"
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _data_uri(path: Path, content_type: str) -> str:
    return f"data:{content_type};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def data_uri_length(size: int, content_type: str) -> int:
    """Length of the data URI that would carry ``size`` bytes."""
    return len(f"data:{content_type};base64,") + 4 * ((size + 2) // 3)


async def provider_uri(
    db: Database,
    rt: Runtime,
    http: httpx.AsyncClient,
    *,
    account_id: str,
    task_id: str,
    role: str,
    ref: dict[str, Any],
    upload: Upload,
) -> str:
    """What to send a Runway-compatible provider as this input's ``uri``.

    HTTPS URLs and foreign ``runway://`` URIs pass unchanged; data URIs pass when within
    Runway's data-URI limit (image 5 MB, video 16 MB, measured on the encoded URI);
    anything else Callboard holds is fetched, validated and sent as a data URI when
    small enough, else handed to ``await upload(path, filename)`` (the provider's
    implementation of Runway's upload API, returning a ``runway://`` URI).
    """
    declared = str(ref.get("type"))
    uri = str(ref.get("uri", ""))
    try:
        parsed = refs.classify(uri)
    except ValueError as exc:
        raise validation.invalid(f"The {role} reference is not usable ({exc}).") from None
    cap = validation.data_uri_cap(declared)
    if parsed.kind in ("https", "runway"):
        return uri
    if parsed.kind == "data" and len(uri) <= cap:
        return uri
    path = await fetch_input(db, rt, http, account_id=account_id, task_id=task_id, role=role, ref=ref)
    content_type = validation.content_type_for_path(path)
    if data_uri_length(path.stat().st_size, content_type) <= cap:
        return await asyncio.to_thread(_data_uri, path, content_type)
    return await upload(path, path.name)
