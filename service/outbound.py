"""Outbound HTTP: the clients every outbound path uses, with the SSRF guard at connect time.

PERFORMANCE.md measured httpx's stock transport collapsing under concurrency here, so:

* :func:`session` — a plain ``aiohttp.ClientSession`` for the hottest path (webhook
  fan-out), the fastest client measured on this machine kind.
* :func:`httpx_client` — the httpx API (what respx and the provider code speak) on the
  aiohttp transport. Tests inject their own ``httpx.AsyncClient`` (e.g. a respx
  transport) instead; the choice is made once, at start-up.

With ``guarded=True`` (every user-supplied destination) the connector's resolver
refuses host names that resolve to addresses :mod:`service.netguard` forbids — checked
on every new connection, so DNS changes after the URL was accepted do not get through —
and :func:`check_destination` must be called on the URL before each request (aiohttp
does not consult the resolver for IP literals). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from service import __version__, netguard

USER_AGENT = f"Callboard/{__version__}"


class BlockedDestination(aiohttp.ClientConnectionError):
    """The destination resolved to an address the SSRF policy forbids."""


class GuardedResolver(AbstractResolver):
    """Resolve with the system resolver, then refuse forbidden addresses.

    Any forbidden address among the answers refuses the whole name: a name that mixes
    public and private answers is a rebinding attempt more often than not.
    """

    def __init__(self, allow: netguard.Allowlist, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or ThreadedResolver()  # tests inject a resolver answering from a table
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:  # pragma: no cover - resolvers return literals
                raise BlockedDestination(f"destination {host} resolved to an unreadable address") from None
            try:
                netguard.check_address(host, ip, self._allow)
            except netguard.UrlRejected as exc:
                raise BlockedDestination(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_destination(url: str, allow: netguard.Allowlist) -> None:
    """Refuse a URL whose literal host is forbidden (raises ``netguard.UrlRejected``)."""
    netguard.check_url(url, allow)


def connector(
    *, allow: netguard.Allowlist | None, limit: int = 256, limit_per_host: int = 0
) -> aiohttp.TCPConnector:
    """A connector; with an allowlist given, guarded by :class:`GuardedResolver`."""
    kwargs: dict[str, Any] = {"limit": limit, "limit_per_host": limit_per_host, "ttl_dns_cache": 10}
    if allow is not None:
        kwargs["resolver"] = GuardedResolver(allow)
    return aiohttp.TCPConnector(**kwargs)


def session(
    *,
    allow: netguard.Allowlist | None,
    connect_timeout: float = 5.0,
    total_timeout: float = 15.0,
    limit: int = 256,
) -> aiohttp.ClientSession:
    """An aiohttp session (create it inside the running event loop)."""
    return aiohttp.ClientSession(
        connector=connector(allow=allow, limit=limit),
        timeout=aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=True,
        trust_env=False,
    )


def httpx_client(
    *,
    allow: netguard.Allowlist | None,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    limit: int = 256,
) -> httpx.AsyncClient:
    """An httpx client on the aiohttp transport; redirects are not followed."""

    def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=connector(allow=allow, limit=limit), trust_env=False)

    return httpx.AsyncClient(
        transport=AiohttpTransport(client=make_session),
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        follow_redirects=False,
    )
