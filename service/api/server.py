"""The HTTP server protocol ``callboard serve`` runs: uvicorn's httptools protocol with
limits on the request head.

uvicorn bounds a request head only on its h11 protocol; with httptools (chosen for
speed, PERFORMANCE.md) a client could send a head of any size — a 20 MB header, or
100,000 headers — and the server would buffer all of it, or trickle one byte at a time
and hold the connection for ever (slowloris). This protocol answers:

* **431** and closes once a head passes ``max_head_bytes`` (counted as bytes arrive,
  before parsing finishes, so memory stays bounded);
* **408** and closes when a head is not complete ``head_timeout`` seconds after its
  first byte.

Bodies are limited elsewhere (``CALLBOARD_MAX_BODY_BYTES``, ``service.api.context``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


def protocol(max_head_bytes: int, head_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class LimitedHttpToolsProtocol(HeadLimitedProtocol):
        pass

    LimitedHttpToolsProtocol.max_head_bytes = max_head_bytes
    LimitedHttpToolsProtocol.head_timeout = head_timeout
    return LimitedHttpToolsProtocol


class HeadLimitedProtocol(HttpToolsProtocol):
    """Two counts guard the head: the bytes of chunks that arrived while a head was
    unfinished (bounds what the parser buffers for a head that never ends), and the
    parsed size of the request line and headers (exact, however the head was chunked).
    Either over the limit answers 431 before the application sees the request."""

    max_head_bytes = 64 * 1024
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._raw_bytes = 0
        self._parsed_bytes = 0
        self._too_large = False
        self._heads = 0  # heads completed on this connection
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_timer is None and self.head_timeout > 0:
            self._head_timer = self.loop.call_later(self.head_timeout, self._refuse, 408)
        counting, heads = self._in_head, self._heads
        super().data_received(data)
        if self.transport is None or self.transport.is_closing():
            return
        if self._too_large:
            self._refuse(431)
        elif counting and heads == self._heads and self._in_head:  # a chunk wholly inside a head
            self._raw_bytes += len(data)
            if self._raw_bytes > self.max_head_bytes:
                self._refuse(431)

    def on_url(self, url: bytes) -> None:
        self._count(len(url) + 16)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._too_large:
            super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._parsed_bytes += n
        if self._parsed_bytes > self.max_head_bytes:
            self._too_large = True

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._end_head()
        if not self._too_large:  # an oversized request never reaches the application
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            return
        super().on_message_complete()
        self._in_head, self._raw_bytes, self._parsed_bytes = True, 0, 0  # the next request

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int) -> None:
        """Answer ``status`` with a JSON error and close the connection."""
        self._end_head()
        if self.transport is None or self.transport.is_closing():
            return
        if status == 431:
            body = b'{"error":"Request headers are too large","code":"headers_too_large"}'
        else:
            body = b'{"error":"The request headers did not arrive in time","code":"request_timeout"}'
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
