"""Uploads and stored files: Runway's two-step upload flow, and the signed file route.

* ``POST /v1/uploads`` — start an upload (authenticated, like every ``/v1`` route).
* ``POST /uploads/{token}`` — the ``uploadUrl``: multipart, no auth header (the signed
  token is the credential), streamed under ``CALLBOARD_UPLOAD_MAX_BYTES``; 204.
* ``GET|HEAD /files/{token}/{name}`` — a stored output behind a signed, expiring link,
  with HTTP Range (206 / 416) so video elements can seek.
"""

from __future__ import annotations

import pathlib
from typing import Any

import itsdangerous
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service import errors, storage
from service.api import context
from service.api.responses import JSON, no_content
from service.media import ranges, uploads, validation


class LinkExpired(errors.ServiceError):
    status = 403
    code = "link_expired"


async def create_upload(request: Request) -> Response:
    context.check_version(request)
    account = await context.account(request)
    filename = uploads.parse_start(await context.read_json(request))
    svc = context.services(request)
    body = await svc.db.write(
        lambda conn: uploads.start(conn, svc.rt, account_id=account["id"], filename=filename)
    )
    return JSON(body)


async def receive_upload(request: Request) -> Response:
    svc = context.services(request)
    await uploads.receive(
        svc.db,
        svc.rt,
        token=request.path_params["token"],
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        stream=request.stream(),
    )
    return no_content()


def _not_found() -> errors.NotFound:
    return errors.NotFound(
        "File not found (stored files are deleted after the retention period)", code="file_not_found"
    )


async def get_file(request: Request) -> Response:
    svc = context.services(request)
    try:
        payload = svc.rt.links.verify(request.path_params["token"])
    except itsdangerous.SignatureExpired:
        raise LinkExpired("This link has expired; fetch the task again for a fresh one") from None
    except itsdangerous.BadSignature:
        raise _not_found() from None
    key = payload.get("k") if isinstance(payload, dict) else None
    if not isinstance(key, str) or key.rsplit("/", 1)[-1] != request.path_params["name"]:
        raise _not_found()
    store = storage.from_settings(svc.rt.settings)
    try:
        stat = store.stat(key)
    except storage.InvalidKey:
        stat = None
    if stat is None:
        raise _not_found()
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{stat.size:x}-{int(stat.mtime * 1000):x}"',
        "Content-Disposition": f'inline; filename="{request.path_params["name"]}"',
    }
    media_type = validation.content_type_for_path(pathlib.PurePosixPath(key))
    if_range = request.headers.get("if-range")
    range_header = request.headers.get("range")
    if if_range is not None and if_range != headers["ETag"]:
        range_header = None  # the client's copy is stale: send the whole file
    decision = ranges.decide(range_header, stat.size)
    if isinstance(decision, ranges.Unsatisfiable):
        return Response(
            status_code=416, headers={**headers, "Content-Range": decision.content_range(stat.size)}
        )
    if isinstance(decision, ranges.Partial):
        status, start, length = 206, decision.start, decision.length
        headers["Content-Range"] = decision.content_range(stat.size)
    else:
        status, start, length = 200, 0, stat.size
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        store.iter_chunks(key, start, length), status_code=status, headers=headers, media_type=media_type
    )


routes = [
    Route("/v1/uploads", create_upload, methods=["POST"]),
    Route("/uploads/{token}", receive_upload, methods=["POST"]),
    Route("/files/{token}/{name}", get_file, methods=["GET", "HEAD"]),
]

# -- OpenAPI ---------------------------------------------------------------------------
SCHEMAS: dict[str, Any] = {
    "UploadCreate": {
        "type": "object",
        "required": ["filename"],
        "additionalProperties": False,
        "properties": {
            "filename": {"type": "string", "minLength": 1, "maxLength": uploads.FILENAME_MAX},
            "type": {"type": "string", "enum": ["ephemeral"]},
        },
    },
    "UploadStarted": {
        "type": "object",
        "required": ["uploadUrl", "fields", "runwayUri"],
        "properties": {
            "uploadUrl": {"type": "string", "description": "Signed target for the multipart POST (1 h)"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            "runwayUri": {"type": "string", "description": "runway:// URI usable in creates for 24 h"},
        },
    },
}
_token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
PATHS: dict[str, Any] = {
    "/v1/uploads": {
        "post": {
            "summary": "Start an ephemeral upload (Runway's upload API)",
            "operationId": "createUpload",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadCreate"}}},
            },
            "responses": {
                "200": {
                    "description": "Where to POST the file",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/UploadStarted"}}
                    },
                }
            },
        }
    },
    "/uploads/{token}": {
        "post": {
            "summary": "Upload target: multipart with the returned fields, then the part 'file'",
            "operationId": "uploadFile",
            "security": [],
            "parameters": [_token],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    }
                },
            },
            "responses": {
                "204": {"description": "Stored"},
                "400": {"description": "Not an image or video Callboard accepts, or under 512 bytes"},
                "403": {"description": "The upload URL expired"},
                "413": {"description": "Larger than CALLBOARD_UPLOAD_MAX_BYTES"},
            },
        }
    },
    "/files/{token}/{name}": {
        "get": {
            "summary": "A stored output behind a signed, expiring link (supports Range)",
            "operationId": "getFile",
            "security": [],
            "parameters": [
                _token,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The whole file"},
                "206": {"description": "The requested byte range"},
                "403": {"description": "The link expired"},
                "404": {"description": "Unknown link, or the file was deleted by retention"},
                "416": {"description": "The range starts past the end of the file"},
            },
        }
    },
}
