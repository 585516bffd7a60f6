"""Downloading a user's or a provider's URL safely: streamed, capped, bounded in time.

The rules (WEBHOOKS.md, STYLE.md): the literal URL is checked with
``outbound.check_destination`` before anything is sent, the injected client's resolver
refuses private addresses at connect time, redirects are never followed (a 3xx is a
failure naming where it pointed, so a public URL cannot bounce us to a private one),
the whole download has a deadline, and the body is counted as it streams so a server
that lies about (or omits) Content-Length is cut off at the cap.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx

from service import netguard, outbound
from service.media import validation

CHUNK = 64 * 1024


class Sink(Protocol):
    def write(self, data: bytes) -> object: ...


def _blocked_cause(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, outbound.BlockedDestination):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def download(
    http: httpx.AsyncClient,
    url: str,
    sink: Sink,
    *,
    allow: netguard.Allowlist,
    cap: int,
    timeout: float,
    label: str,
    declared: str | None = None,
    cap_text: str | None = None,
) -> tuple[int, str | None]:
    """Stream ``url`` into ``sink``; return ``(bytes written, Content-Type)``.

    Raises :class:`validation.InputError` with a sentence naming ``label`` ("The
    character URL ..."); ``retryable`` is set when the remote side may recover (5xx,
    429, timeouts, connection failures). ``declared`` (image|video) checks the served
    Content-Type; ``cap_text`` words the size limit for the message.
    """
    cap_text = cap_text or f"the {validation.mb(cap)} allowed"
    try:
        outbound.check_destination(url, allow)
    except netguard.UrlRejected as exc:
        raise validation.invalid(f"The {label} URL was refused: {exc}.") from None
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("GET", url, follow_redirects=False) as response:
                status = response.status_code
                if 300 <= status < 400:
                    where = response.headers.get("location", "another address")
                    raise validation.invalid(
                        f"The {label} URL redirects (HTTP {status}) to {where}; redirects are not "
                        "followed, use the final URL."
                    )
                if status >= 400:
                    raise validation.invalid(
                        f"The {label} URL answered HTTP {status}.",
                        retryable=status >= 500 or status in (408, 429),
                    )
                content_type = response.headers.get("content-type")
                if declared is not None:
                    validation.check_content_type(content_type, label, declared)
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > cap:
                    raise validation.invalid(
                        f"The {label} file is {validation.mb(int(length))}, over {cap_text}."
                    )
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > cap:
                        raise validation.invalid(f"The {label} file is larger than {cap_text}.")
                    sink.write(chunk)
    except validation.InputError:
        raise
    except (TimeoutError, httpx.TimeoutException) as exc:
        blocked = _blocked_cause(exc)
        if blocked is not None:
            raise validation.invalid(f"The {label} URL was refused: {blocked}.") from None
        raise validation.invalid(
            f"The {label} URL did not deliver its file within {timeout:g} s.", retryable=True
        ) from None
    except httpx.HTTPError as exc:
        blocked = _blocked_cause(exc)
        if blocked is not None:
            raise validation.invalid(f"The {label} URL was refused: {blocked}.") from None
        reason = str(exc) or type(exc).__name__
        raise validation.invalid(
            f"The {label} URL could not be fetched ({reason}).", retryable=True
        ) from None
    except outbound.BlockedDestination as exc:
        raise validation.invalid(f"The {label} URL was refused: {exc}.") from None
    if size == 0:
        raise validation.invalid(f"The {label} URL returned an empty file.")
    return size, content_type
