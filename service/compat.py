"""useapi.net-style requests and answers, mapped onto Callboard's own task model.

Clients written against that gateway's ``/v1/runwayml/...`` routes switch to Callboard
with a base-URL change: the same field names, defaults and answer shapes, with every
task an ordinary Callboard task (webhooks, the dashboard and the Runway routes see it).

Pure functions: parsing bodies into :class:`~service.taskspec.TaskSpec` values given the
caller's assets, and rendering tasks and assets the way that API shows them.
"""

from __future__ import annotations

import secrets
from typing import Any

from service import clock, errors, links, taskspec, taskview
from service.media import refs

ASPECT_RATIOS = {
    "16:9": "1280:720",
    "9:16": "720:1280",
    "1:1": "960:960",
    "4:3": "1104:832",
    "3:4": "832:1104",
    "21:9": "1584:672",
}
ACTONE_ASPECT_RATIOS = {"landscape": "1280:720", "portrait": "720:1280"}
RATIO_NAMES = {v: k for k, v in ASPECT_RATIOS.items()}
MAX_JOBS_RANGE = (1, 10)
_COMMON = {"replyUrl", "replyRef", "maxJobs", "exploreMode", "seed", "email"}
ACT_TWO_FIELDS = {
    "driving_assetId",
    "character_assetId",
    "aspect_ratio",
    "body_control",
    "expression_intensity",
    *_COMMON,
}
ACT_ONE_FIELDS = {
    "driving_assetId",
    "character_assetId",
    "video_assetId",
    "image_assetId",
    "motion_multiplier",
    "aspect_ratio",
    *_COMMON,
}


def _fail(field: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{field}: {message}", field=field)


def coerce_form(form: dict[str, str]) -> dict[str, Any]:
    """A multipart/form-data body's strings, typed the way the JSON body would be."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        if key in ("body_control", "exploreMode"):
            lowered = value.strip().lower()
            if lowered not in ("true", "false"):
                raise _fail(key, "must be true or false")
            out[key] = lowered == "true"
        elif key in ("expression_intensity", "motion_multiplier", "seed", "maxJobs"):
            try:
                out[key] = int(value)
            except ValueError:
                raise _fail(key, "must be an integer") from None
        else:
            out[key] = value
    return out


def _int_in(body: dict[str, Any], field: str, lo: int, hi: int, default: int | None) -> int | None:
    value = body.get(field, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(field, f"must be an integer from {lo} to {hi}")
    return value


def max_jobs(body: dict[str, Any]) -> int | None:
    return _int_in(body, "maxJobs", *MAX_JOBS_RANGE, default=None)


def asset_ids(body: Any, *, act_one: bool) -> tuple[str, str]:
    """The (driving, character) asset ids a create body names; 400 naming a missing one."""
    if not isinstance(body, dict):
        raise errors.ValidationError("The request body must be a JSON object", field="body")
    allowed = ACT_ONE_FIELDS if act_one else ACT_TWO_FIELDS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _fail(unknown[0], "is not a recognised field")
    driving = body.get("driving_assetId") or (body.get("video_assetId") if act_one else None)
    character = body.get("character_assetId") or (body.get("image_assetId") if act_one else None)
    if not isinstance(driving, str) or not driving:
        raise _fail("driving_assetId", "is required")
    if not isinstance(character, str) or not character:
        raise _fail("character_assetId", "is required")
    return driving, character


def build_spec(
    body: dict[str, Any], *, act_one: bool, driving: Any, character: Any, allow: Any
) -> taskspec.TaskSpec:
    """The task a create body asks for. ``driving``/``character`` are the caller's
    asset rows (None when unknown: 400 naming the field, as for a bad id)."""
    if driving is None:
        raise _fail("driving_assetId", "no such asset (upload it with POST /v1/runwayml/assets/)")
    if character is None:
        raise _fail("character_assetId", "no such asset (upload it with POST /v1/runwayml/assets/)")
    driving_kind = (driving.media or {}).get("kind")
    character_kind = (character.media or {}).get("kind")
    if driving_kind != "video":
        raise _fail("driving_assetId", "must be a video asset (3 to 30 seconds)")
    if character_kind not in ("image", "video"):
        raise _fail("character_assetId", "must be an image or video asset")
    if act_one:
        aspect = body.get("aspect_ratio", "landscape")
        if aspect not in ACTONE_ASPECT_RATIOS:
            raise _fail("aspect_ratio", "must be 'landscape' or 'portrait'")
        ratio = ACTONE_ASPECT_RATIOS[aspect]
        intensity = _int_in(body, "motion_multiplier", 1, 5, default=3)
        body_control = character_kind == "image"
    else:
        aspect = body.get("aspect_ratio", "16:9")
        if aspect not in ASPECT_RATIOS:
            raise _fail("aspect_ratio", f"must be one of {', '.join(ASPECT_RATIOS)}")
        ratio = ASPECT_RATIOS[aspect]
        intensity = _int_in(body, "expression_intensity", 1, 5, default=3)
        body_control = body.get("body_control", True)
        if not isinstance(body_control, bool):
            raise _fail("body_control", "must be true or false")
    seed = _int_in(body, "seed", 0, taskspec.SEED_MAX, default=None)
    explore = body.get("exploreMode", False)
    if not isinstance(explore, bool):
        raise _fail("exploreMode", "must be true or false")
    reply_ref = body.get("replyRef")
    if reply_ref is not None and (
        not isinstance(reply_ref, str) or len(reply_ref) > taskspec.GATEWAY_FIELD_MAX
    ):
        raise _fail("replyRef", f"must be a string of at most {taskspec.GATEWAY_FIELD_MAX} characters")
    max_jobs(body)
    return taskspec.TaskSpec(
        model=taskspec.MODEL,
        character=taskspec.MediaRef(type=character_kind, uri=refs.upload_uri(character.id), scheme="runway"),
        reference=taskspec.MediaRef(type="video", uri=refs.upload_uri(driving.id), scheme="runway"),
        ratio=ratio,
        seed=secrets.randbelow(taskspec.SEED_MAX + 1) if seed is None else seed,
        expression_intensity=intensity or 3,
        body_control=body_control,
        public_figure_threshold="auto",
        reply_url=taskspec.parse_reply_url(body.get("replyUrl"), "replyUrl", allow),
        reply_ref=reply_ref,
    )


def _asset_id_of(uri: str) -> str | None:
    try:
        return refs.classify(uri).asset_id
    except ValueError:
        return None


def task_view(row: Any, spec: dict[str, Any] | None, file_links: links.Links) -> dict[str, Any]:
    """A task the way the useapi-style routes show it."""
    runway = taskview.view(row, file_links)
    spec = spec or {}
    ratio = spec.get("ratio")
    width, height = (int(x) for x in ratio.split(":")) if ratio else (None, None)
    artifacts = [
        {
            "assetId": f"{row.id}-output-{i}",
            "url": url,
            "taskId": row.id,
            "metadata": {"frameRate": 24, "dimensions": [width, height]},
        }
        for i, url in enumerate(runway.get("output", []))
    ]
    progress = runway.get("progress", 1.0 if row.status == "SUCCEEDED" else 0.0)
    return {
        "taskId": row.id,
        "id": row.id,
        "name": f"Act-Two {row.id[:8]}",
        "createdAt": runway["createdAt"],
        "updatedAt": runway["updatedAt"],
        "taskType": "act_two",
        "options": {
            "driving_assetId": _asset_id_of(spec.get("reference", {}).get("uri", "")),
            "character_assetId": _asset_id_of(spec.get("character", {}).get("uri", "")),
            "aspect_ratio": RATIO_NAMES.get(ratio or "", ratio),
            "body_control": spec.get("bodyControl"),
            "expression_intensity": spec.get("expressionIntensity"),
            "seed": spec.get("seed"),
        },
        "status": row.status,
        "error": runway.get("failure"),
        "failureCode": runway.get("failureCode"),
        "progressText": None,
        "progressRatio": f"{progress:g}",
        "estimatedTimeToStartSeconds": None,
        "artifacts": artifacts,
        "replyUrl": row.reply_url,
        "replyRef": row.reply_ref,
    }


def asset_view(row: Any) -> dict[str, Any]:
    media = row.media or {}
    return {
        "assetId": row.id,
        "name": row.filename,
        "mediaType": media.get("kind"),
        "contentType": row.content_type,
        "fileSize": row.size,
        "createdAt": clock.iso(row.created_at),
        "metadata": {
            "dimensions": [media.get("width"), media.get("height")],
            "duration": media.get("durationS"),
            "frameRate": media.get("fps"),
        },
    }
