"""Providers: where a task's video is actually made.

``runway`` and ``cometapi`` are remote (:class:`base.Provider`: submit, poll, cancel);
``local`` renders with the embedded engine in child processes
(:class:`local.LocalEngine`). The deployment picks one with ``CALLBOARD_PROVIDER``;
each task records the provider that ran it and the provider's task id.
"""

from __future__ import annotations

from typing import Any

from service.providers import base, cometapi, runway

REMOTE = ("runway", "cometapi")


def build_remote(name: str, settings: Any, http: Any, clock: Any = None) -> base.Provider:
    """The remote provider called ``name``, speaking over the injected ``http`` client
    (an ``httpx.AsyncClient``, an ``aiohttp.ClientSession`` or a factory of one)."""
    common: dict[str, Any] = {
        "timeout": settings.provider_timeout,
        "max_concurrency": settings.provider_max_concurrency,
        "clock": clock,
    }
    if name == "runway":
        return runway.RunwayProvider(
            http, base_url=settings.runway_base_url, api_key=settings.runway_api_key, **common
        )
    if name == "cometapi":
        return cometapi.CometProvider(
            http,
            base_url=settings.cometapi_base_url,
            api_key=settings.cometapi_api_key,
            not_found_grace=settings.cometapi_not_found_grace,
            **common,
        )
    raise ValueError(f"{name!r} is not a remote provider")
