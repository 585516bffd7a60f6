"""Runway's upload flow, served by Callboard.

1. ``POST /v1/uploads {"filename", "type": "ephemeral"}`` → :func:`start` records an
   ``upload`` asset without bytes and answers ``uploadUrl`` (a signed Callboard URL,
   valid for an hour), ``fields`` and ``runwayUri`` (``runway://callboard/uploads/<id>``).
2. The client POSTs multipart to ``uploadUrl`` with no auth header: every ``fields``
   entry, then the part ``file``. :func:`receive` streams it to disk under the size
   limit, probes it (a file no act_two input could be is refused at once, 400 naming
   ``file``), stores it and completes the asset. Answer: 204, as S3 does.
3. The ``runwayUri`` is then valid in creates for 24 h, for the owning account only;
   :func:`check_usable` applies the role rules at create time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import itsdangerous
from sqlalchemy.engine import Connection

from service import engine, errors, storage
from service.db import Database
from service.media import assets, multipart, refs, validation
from service.runtime import Runtime

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".mp4", ".mov", ".webm", ".mkv", ".m4v")
FILENAME_MAX = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadUrlExpired(errors.ServiceError):
    """The signed upload target is past its lifetime (S3 answers 403 here too)."""

    status = 403
    code = "upload_url_expired"


class UploadConflict(errors.ServiceError):
    """The upload already holds a different file. 400, not 409: the SDK retries 409."""

    status = 400
    code = "upload_completed"


def parse_start(body: Any) -> str:
    """Validate a ``POST /v1/uploads`` body; the filename."""
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    unknown = sorted(set(body) - {"filename", "type"})
    if unknown:
        raise errors.ValidationError(f"{unknown[0]}: is not a recognised field", field=unknown[0])
    kind = body.get("type", "ephemeral")
    if kind != "ephemeral":
        raise errors.ValidationError("type: must be 'ephemeral'", field="type")
    filename = body.get("filename")
    if not isinstance(filename, str) or not 1 <= len(filename) <= FILENAME_MAX:
        raise errors.ValidationError(
            f"filename: is required, a string of 1 to {FILENAME_MAX} characters", field="filename"
        )
    if not filename.lower().endswith(EXTENSIONS):
        raise errors.ValidationError(
            f"filename: must end in one of {', '.join(EXTENSIONS)} (an image or a video)", field="filename"
        )
    return filename


def safe_name(filename: str) -> str:
    """A storage-key-safe version of a client's file name (keeps the extension)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("-", base).strip(".-") or "file"
    return cleaned[-100:]


def start(conn: Connection, rt: Runtime, *, account_id: str, filename: str) -> dict[str, Any]:
    """Record a pending upload; Runway's answer ``{"uploadUrl", "fields", "runwayUri"}``."""
    asset_id = assets.new_id()
    row = assets.row(
        rt, asset_id=asset_id, kind="upload", account_id=account_id, now=rt.now(), filename=filename
    )
    assets.insert(conn, [row])
    return {
        "uploadUrl": rt.links.upload_url(asset_id),
        "fields": {"key": asset_id},
        "runwayUri": refs.upload_uri(asset_id),
    }


def _complete(conn: Connection, asset_id: str, values: dict[str, Any]) -> Any:
    """Attach the stored file to a pending upload. Returns None if it applied, else the
    row as it stands (another POST completed it first)."""
    a = assets.a
    result = conn.execute(
        a.update()
        .where(a.c.id == asset_id, a.c.storage_key.is_(None), a.c.deleted_at.is_(None))
        .values(**values)
    )
    if result.rowcount == 1:
        return None
    return assets.get_by_id(conn, asset_id)


async def receive(
    db: Database,
    rt: Runtime,
    *,
    token: str,
    content_type: str | None,
    content_length: str | None,
    stream: AsyncIterator[bytes],
) -> None:
    """Accept the file POSTed to an upload target (see the module docstring)."""
    try:
        asset_id = rt.links.verify_upload(token)
    except itsdangerous.SignatureExpired:
        raise UploadUrlExpired(
            "This upload URL has expired; request a new one with POST /v1/uploads"
        ) from None
    except itsdangerous.BadSignature:
        raise errors.NotFound("Unknown upload URL", code="upload_not_found") from None
    row = await db.read(lambda conn: assets.get_by_id(conn, asset_id))
    if row is None or row.kind != "upload" or row.deleted_at is not None:
        raise errors.NotFound("Unknown upload URL", code="upload_not_found")
    limit = rt.settings.upload_max_bytes
    if content_length is not None and content_length.isdigit() and int(content_length) > limit + 64 * 1024:
        raise errors.PayloadTooLarge(f"file: the file is larger than the {limit} bytes allowed", field="file")

    tmp_dir = rt.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"upload-{uuid.uuid4().hex}.part"
    store = storage.from_settings(rt.settings)
    try:
        with storage.Writer(tmp) as out:  # ``tmp`` holds the whole file once this block ends
            form = await multipart.read_form(content_type, stream, out, limit=limit)
            digest = out.sha256
        if form.fields.get("key", asset_id) != asset_id:
            raise errors.ValidationError("key: does not match this upload URL", field="key")
        if form.size < validation.UPLOAD_MIN_BYTES:
            raise errors.ValidationError(
                f"file: the file is {form.size} bytes; uploads must be {validation.UPLOAD_MIN_BYTES} bytes "
                f"to {validation.mb(limit)}",
                field="file",
            )
        if row.storage_key is not None:
            _check_same(row, digest)
            return
        info, key, stat = await _probe_and_store(store, tmp, asset_id, row.filename or "file", field="file")
        values = {
            "storage_key": key,
            "size": stat.size,
            "sha256": digest,
            "content_type": validation.content_type_of(info),
            "media": validation.info_to_json(info),
        }
        current = await db.write(lambda conn: _complete(conn, asset_id, values))
        if current is not None:  # a concurrent POST won: keep its file, drop ours
            store.delete(key)
            _check_same(current, digest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


async def _probe_and_store(
    store: storage.Storage, tmp: Path, asset_id: str, filename: str, *, field: str
) -> tuple[engine.MediaInfo, str, storage.Stat]:
    """Check a received file (400 naming ``field`` if no act_two input could be it) and
    move it into storage under the upload's key: ``(media facts, key, stat)``."""
    try:
        info = await validation.probe(tmp)
    except validation.InputError as exc:
        raise errors.ValidationError(f"{field}: {exc.message}", field=field) from None
    name = safe_name(filename)
    if "." not in name:
        name += validation.extension_of(info)
    key = f"uploads/{asset_id}/{uuid.uuid4().hex[:8]}-{name}"
    stat = await asyncio.to_thread(store.put_file, key, tmp, move=True)
    return info, key, stat


def _check_same(row: Any, digest: str) -> None:
    """A repeated POST of the same bytes succeeds (a client retrying after a lost
    answer); different bytes are refused: a runwayUri never changes content."""
    if row.sha256 != digest:
        raise UploadConflict(
            "This upload already has a file; request a new upload URL with POST /v1/uploads", field="file"
        )


def check_usable(rt: Runtime, row: Any, *, role: str, declared: str) -> engine.MediaInfo:
    """The upload's media facts if it may be used as ``role`` now; else InputError.

    ``row`` is the account's asset (None when unknown or another account's: the
    message does not tell the two apart).
    """
    if row is None or row.kind != "upload":
        raise validation.invalid("no such upload (runwayUri values are valid for the account that uploaded)")
    if row.storage_key is None or row.media is None:
        raise validation.invalid("the upload has no file yet; POST the file to its uploadUrl first")
    if rt.now() > row.created_at + assets.UPLOAD_VALID_SECONDS:
        raise validation.invalid("the upload has expired; uploads can be used for 24 hours")
    info = validation.info_from_json(row.media)
    validation.check_role(info, role, declared)
    return info


async def store_body(
    db: Database,
    rt: Runtime,
    *,
    account_id: str,
    filename: str,
    content_length: str | None,
    stream: AsyncIterator[bytes],
) -> Any:
    """Store a raw request body as a completed upload in one step (the useapi.net-style
    ``POST /v1/runwayml/assets/?name=`` front). Same limits and checks as the two-step
    flow; a file no act_two input could be is refused with 400 naming ``body``. Returns
    the asset row."""
    limit = rt.settings.upload_max_bytes
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise errors.PayloadTooLarge(f"body: the file is larger than the {limit} bytes allowed", field="body")
    tmp_dir = rt.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"asset-{uuid.uuid4().hex}.part"
    store = storage.from_settings(rt.settings)
    try:
        with storage.Writer(tmp) as out:
            async for chunk in stream:
                if out.size + len(chunk) > limit:
                    raise errors.PayloadTooLarge(
                        f"body: the file is larger than the {limit} bytes allowed", field="body"
                    )
                out.write(chunk)
            size, digest = out.size, out.sha256
        if size < validation.UPLOAD_MIN_BYTES:
            raise errors.ValidationError(
                f"body: the file is {size} bytes; assets must be {validation.UPLOAD_MIN_BYTES} bytes "
                f"to {validation.mb(limit)}",
                field="body",
            )
        asset_id = assets.new_id()
        info, key, stat = await _probe_and_store(store, tmp, asset_id, filename, field="body")
        row = assets.row(
            rt,
            asset_id=asset_id,
            kind="upload",
            account_id=account_id,
            now=rt.now(),
            filename=filename,
            content_type=validation.content_type_of(info),
            size=stat.size,
            sha256=digest,
            storage_key=key,
            media=validation.info_to_json(info),
        )
        try:
            await db.write(lambda conn: assets.insert(conn, [row]))
        except BaseException:
            store.delete(key)
            raise
        return row
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
