"""Test helpers shared across the suite: a fake clock, a live server, media paths."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("CALLBOARD_TEST_MEDIA", ROOT.parent / "shared" / "media"))


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(
    app: Any, port: int | None = None, *, host_name: str = "127.0.0.1", **config_options: Any
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL.

    Extra keyword arguments go to ``uvicorn.Config`` (e.g. ``ssl_certfile``: the URL is
    then ``https://``; ``lifespan="off"``); ``host_name`` is the host the URL names."""
    port = port or free_port()
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "loop": "asyncio", **config_options}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://{host_name}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
