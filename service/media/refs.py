"""The input references a stored task spec may hold, and how to tell them apart.

* ``https://...`` — fetched by Callboard when a provider needs the bytes.
* ``data:<type>;base64,...`` — only in specs written by fronts that bypass intake;
  intake turns data URIs into stored assets (below) so a spec never keeps megabytes
  of base64.
* ``callboard://assets/<asset id>`` — a file intake stored (a decoded data URI).
* ``runway://callboard/uploads/<asset id>`` — a file uploaded through ``POST /v1/uploads``.
* any other ``runway://`` URI — an upload made directly at Runway; only the runway
  provider can use it, and it is passed through unchanged.
"""

from __future__ import annotations

import dataclasses
import re

ASSET_PREFIX = "callboard://assets/"
UPLOAD_PREFIX = "runway://callboard/uploads/"
_ID = re.compile(r"^[a-z]{2,8}_[0-9a-f]{8,64}$")


@dataclasses.dataclass(frozen=True)
class Ref:
    kind: str  # https | data | asset | upload | runway
    uri: str
    asset_id: str | None = None


def classify(uri: str) -> Ref:
    """What kind of reference ``uri`` is; ValueError for anything else."""
    for prefix, kind in ((ASSET_PREFIX, "asset"), (UPLOAD_PREFIX, "upload")):
        if uri.startswith(prefix):
            asset_id = uri[len(prefix) :]
            if not _ID.match(asset_id):
                raise ValueError(f"malformed {kind} reference {uri!r}")
            return Ref(kind=kind, uri=uri, asset_id=asset_id)
    if uri.startswith("runway://"):
        return Ref(kind="runway", uri=uri)
    if uri.startswith("data:"):
        return Ref(kind="data", uri=uri)
    if uri.lower().startswith("https://"):
        return Ref(kind="https", uri=uri)
    raise ValueError(f"unsupported input reference {uri[:40]!r}")


def asset_uri(asset_id: str) -> str:
    return ASSET_PREFIX + asset_id


def upload_uri(asset_id: str) -> str:
    return UPLOAD_PREFIX + asset_id
