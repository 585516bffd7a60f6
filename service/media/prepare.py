"""Create-time input preparation: validate what can be validated now, store data URIs.

Called by intake before the task is written, so bad input gets a 400 naming the field
instead of a FAILED task later:

* a ``data:`` URI is decoded, probed and checked for its role, then stored as an
  ``input`` asset; the spec keeps ``callboard://assets/<id>`` instead of megabytes of
  base64;
* a ``runway://callboard/uploads/<id>`` URI must name a completed upload of this
  account, under 24 h old, whose file suits the role;
* another ``runway://`` URI is only meaningful to the runway provider (an upload made
  at Runway itself) and is refused for the others;
* HTTPS URLs are checked when fetched (FAILED ``ASSET.INVALID`` then).

The reference's duration, when known here, gives the credit estimate.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from typing import Any

from service import errors, storage, taskspec
from service.db import Database
from service.media import assets, refs, uploads, validation
from service.runtime import Runtime


@dataclasses.dataclass
class Prepared:
    """The spec to store, the asset rows to insert with the task, and what was stored."""

    spec: taskspec.TaskSpec
    asset_rows: list[dict[str, Any]]
    stored_keys: list[str]
    reference_seconds: float | None

    def rows_for(self, task_id: str) -> list[dict[str, Any]]:
        return [{**row, "task_id": task_id} for row in self.asset_rows]

    def discard(self, rt: Runtime) -> None:
        """Delete the files stored for a task that was not created (replay, error)."""
        store = storage.from_settings(rt.settings)
        for key in self.stored_keys:
            store.delete(key)


def _field_error(role: str, message: str) -> errors.ValidationError:
    field = f"{role}.uri"
    return errors.ValidationError(f"{field}: {message}", field=field)


async def _store_data_uri(
    rt: Runtime, account_id: str, role: str, ref: taskspec.MediaRef
) -> tuple[dict[str, Any], Any]:
    """Decode, probe, role-check and store one data URI; its asset row and media facts."""
    tmp_dir = rt.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"data-{uuid.uuid4().hex}.part"
    try:
        raw = base64.b64decode(ref.uri[ref.uri.index(",") + 1 :])
        await asyncio.to_thread(tmp.write_bytes, raw)
        try:
            info = await validation.validate(tmp, role, ref.type)
        except validation.InputError as exc:
            raise _field_error(role, exc.message) from None
        asset_id = assets.new_id()
        key = f"inputs/{asset_id}/{role}{validation.extension_of(info)}"
        store = storage.from_settings(rt.settings)
        stat = await asyncio.to_thread(store.put_file, key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    row = assets.row(
        rt,
        asset_id=asset_id,
        kind="input",
        account_id=account_id,
        now=rt.now(),
        filename=key.rsplit("/", 1)[-1],
        content_type=validation.content_type_of(info),
        size=stat.size,
        storage_key=key,
        media=validation.info_to_json(info),
    )
    return row, info


async def prepare(db: Database, rt: Runtime, *, account_id: str, spec: taskspec.TaskSpec) -> Prepared:
    """Validate and store the spec's inputs; raises ``errors.ValidationError`` naming
    ``character.uri`` or ``reference.uri``. On error nothing stays stored."""
    prepared = Prepared(spec=spec, asset_rows=[], stored_keys=[], reference_seconds=None)
    try:
        for role in validation.ROLES:
            ref: taskspec.MediaRef = getattr(prepared.spec, role)
            info = None
            if ref.scheme == "data":
                row, info = await _store_data_uri(rt, account_id, role, ref)
                prepared.asset_rows.append(row)
                prepared.stored_keys.append(row["storage_key"])
                stored = dataclasses.replace(ref, uri=refs.asset_uri(row["id"]), scheme="asset", size=None)
                prepared.spec = dataclasses.replace(prepared.spec, **{role: stored})  # type: ignore[arg-type]
            elif ref.scheme == "runway":
                info = await _check_runway_uri(db, rt, account_id, role, ref)
            if role == "reference" and info is not None:
                prepared.reference_seconds = info.duration_s
    except BaseException:
        prepared.discard(rt)
        raise
    return prepared


async def _check_runway_uri(
    db: Database, rt: Runtime, account_id: str, role: str, ref: taskspec.MediaRef
) -> Any:
    try:
        parsed = refs.classify(ref.uri)
    except ValueError:
        raise _field_error(role, "is not a valid upload URI") from None
    if parsed.kind != "upload":
        if rt.settings.provider == "runway":
            return None  # an upload made at Runway itself: only Runway can read it
        raise _field_error(role, "no such upload (use the runwayUri that POST /v1/uploads returned)")
    asset_id = parsed.asset_id
    assert asset_id is not None
    row = await db.read(lambda conn: assets.get(conn, account_id, asset_id))
    try:
        return uploads.check_usable(rt, row, role=role, declared=ref.type)
    except validation.InputError as exc:
        raise _field_error(role, exc.message) from None
