"""The playground: pick or upload a character and a driving clip, choose options, submit,
watch the task's progress live, then play and download the result.

Inputs come from the form's files or from the operator's examples folder
(``CALLBOARD_EXAMPLES_DIR``; none ship with Callboard). Either way the bytes go through
the same intake as the API (``service.intake``), so the playground can never create a
task the API would refuse, and a bad input is shown with the API's own message.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from service import errors, intake, tasks, taskspec
from service.api import context
from service.settings import Settings
from service.web import guard, render, taskpages
from service.web import session as session_mod

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
VIDEO_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
FIELD_LABELS = {
    "character": "Character",
    "reference": "Driving clip",
    "ratio": "Ratio",
    "expressionIntensity": "Expression intensity",
    "bodyControl": "Body control",
    "seed": "Seed",
}


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    kind: str  # image | video
    media_type: str


def examples(settings: Settings) -> list[Example]:
    """The examples folder's images and videos, by name (empty when not configured)."""
    folder = settings.examples_dir
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or path.name.startswith("."):
            continue
        if suffix in IMAGE_TYPES:
            found.append(Example(path.name, "image", IMAGE_TYPES[suffix]))
        elif suffix in VIDEO_TYPES:
            found.append(Example(path.name, "video", VIDEO_TYPES[suffix]))
    return found


def _example(settings: Settings, name: str) -> tuple[Example, Path]:
    for item in examples(settings):
        if item.name == name:
            assert settings.examples_dir is not None
            return item, settings.examples_dir / item.name
    raise errors.NotFound(f"No example named {name!r}", code="example_not_found")


def _kind_of(media_type: str, filename: str) -> tuple[str, str] | None:
    """``(image|video, media type)`` from the browser's label, else the file name."""
    media_type = (media_type or "").split(";", 1)[0].strip().lower()
    if media_type in taskspec.IMAGE_TYPES:
        return "image", media_type
    if media_type in taskspec.VIDEO_TYPES:
        return "video", media_type
    suffix = Path(filename or "").suffix.lower()
    if suffix in IMAGE_TYPES:
        return "image", IMAGE_TYPES[suffix]
    if suffix in VIDEO_TYPES:
        return "video", VIDEO_TYPES[suffix]
    return None


async def _input(form: FormData, role: str, settings: Settings) -> dict[str, str]:
    """The ``{"type", "uri"}`` for one role: the uploaded file if any, else the example."""
    upload = form.get(f"{role}_file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read()
        if not data:
            raise errors.ValidationError(f"{FIELD_LABELS[role]}: the uploaded file is empty", field=role)
        kind = _kind_of(upload.content_type or "", upload.filename)
        if kind is None:
            raise errors.ValidationError(
                f"{FIELD_LABELS[role]}: upload a JPEG, PNG or WebP image or an MP4, MOV or WebM video",
                field=role,
            )
        return {"type": kind[0], "uri": _data_uri(kind[1], data)}
    name = guard.field(form, f"{role}_example")
    if not name:
        raise errors.ValidationError(f"{FIELD_LABELS[role]}: upload a file or pick an example", field=role)
    item, path = _example(settings, name)
    return {"type": item.kind, "uri": _data_uri(item.media_type, path.read_bytes())}


def _data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _options(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {"ratio": guard.field(form, "ratio") or taskspec.DEFAULT_RATIO}
    intensity = guard.field(form, "expressionIntensity") or "3"
    if not intensity.isdigit():
        raise errors.ValidationError(
            "Expression intensity: choose a whole number from 1 to 5", field="expressionIntensity"
        )
    body["expressionIntensity"] = int(intensity)
    body["bodyControl"] = guard.field(form, "bodyControl") in ("on", "true", "1")
    seed = guard.field(form, "seed")
    if seed:
        if not seed.isdigit():
            raise errors.ValidationError(f"Seed: a whole number from 0 to {taskspec.SEED_MAX}", field="seed")
        body["seed"] = int(seed)
    return body


def _values(form: FormData | None) -> dict[str, str]:
    names = ("ratio", "expressionIntensity", "seed", "character_example", "reference_example")
    values = {name: guard.field(form, name) for name in names}
    values["bodyControl"] = "on" if form is None or guard.field(form, "bodyControl") else ""
    return values


def _render(
    request: Request,
    session: session_mod.Session,
    *,
    form: FormData | None,
    error: errors.ServiceError | None = None,
    item: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    svc = context.services(request)
    return render.page(
        request,
        "playground.html",
        {
            "examples": examples(svc.rt.settings),
            "ratios": taskspec.RATIOS,
            "values": _values(form),
            "error": error.message if error is not None else None,
            "error_field": error.field if error is not None else None,
            "item": item,
        },
        session=session,
        status_code=status_code,
        active="playground",
    )


@guard.page
async def form_page(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    svc = context.services(request)
    item = None
    task_id = request.query_params.get("task")
    if task_id:
        row = await svc.db.read(lambda conn: tasks.get(conn, session.account["id"], task_id))
        item = taskpages.summary(row, svc.rt)
    return _render(request, session, form=None, item=item)


@guard.page
async def submit(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    assert form is not None
    svc = context.services(request)
    try:
        body: dict[str, Any] = {"model": taskspec.MODEL}
        body["character"] = await _input(form, "character", svc.rt.settings)
        body["reference"] = await _input(form, "reference", svc.rt.settings)
        body.update(_options(form))
        result = await intake.create_task(svc.db, svc.rt, account=session.account, body=body)
    except errors.ValidationError as exc:
        return _render(request, session, form=form, error=exc, status_code=400)
    except errors.NotFound as exc:
        return _render(request, session, form=form, error=exc, status_code=400)
    return RedirectResponse(f"/ui/playground?task={result.row.id}", status_code=303)


@guard.page
async def example_file(request: Request, session: session_mod.Session, form: FormData | None) -> Response:
    """An example's bytes, for the form's preview."""
    item, path = _example(context.services(request).rt.settings, request.path_params["name"])
    return FileResponse(path, media_type=item.media_type, headers={"Cache-Control": "private, max-age=3600"})
