"""What domain code needs from its process, built once at start-up and passed in."""

from __future__ import annotations

import dataclasses

from service import clock as clock_mod
from service import links as links_mod
from service import netguard
from service.settings import Settings


@dataclasses.dataclass
class Runtime:
    settings: Settings
    clock: clock_mod.Clock
    links: links_mod.Links
    allow: netguard.Allowlist

    def now(self) -> float:
        return self.clock.now()


def build(settings: Settings, clock: clock_mod.Clock | None = None) -> Runtime:
    clock = clock or clock_mod.SystemClock()
    return Runtime(
        settings=settings,
        clock=clock,
        links=links_mod.Links(
            settings.secret_key, settings.public_url, ttl_seconds=settings.link_ttl_seconds, clock=clock.now
        ),
        allow=netguard.Allowlist(settings.allow_private_targets),
    )
