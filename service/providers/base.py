"""The provider interface: submit, poll, cancel — with typed results and typed errors.

A *remote* provider (Runway, CometAPI) holds the job upstream: the runner submits it
once, then polls it on a schedule kept in the database, and cancels it in the
background after a DELETE. Every outcome is one of the values or exceptions below, so
the runner never looks at HTTP: it maps :class:`Status` onto a task transition and
each error class onto "retry later", "wait for a slot" or FAILED.

The local engine is not remote (the render runs inside the worker), see
:mod:`service.providers.local`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

STATUSES = ("PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")

#: ``await upload(path, filename) -> "runway://..."``: hands a local file to the provider.
Upload = Callable[[Any, str], Awaitable[str]]


@dataclasses.dataclass(frozen=True)
class Job:
    """What a provider needs to start one task: Runway's create fields, URIs resolved."""

    character: dict[str, str]  # {"type": "image"|"video", "uri": ...}
    reference: dict[str, str]
    ratio: str
    seed: int
    expression_intensity: int
    body_control: bool
    public_figure_threshold: str = "auto"

    @classmethod
    def from_spec(cls, spec: dict[str, Any], character_uri: str, reference_uri: str) -> Job:
        """The job for a stored task spec (``taskspec.TaskSpec.to_json`` form)."""
        moderation = spec.get("contentModeration") or {}
        return cls(
            character={"type": spec["character"]["type"], "uri": character_uri},
            reference={"type": "video", "uri": reference_uri},
            ratio=spec["ratio"],
            seed=int(spec["seed"]),
            expression_intensity=int(spec["expressionIntensity"]),
            body_control=bool(spec["bodyControl"]),
            public_figure_threshold=moderation.get("publicFigureThreshold", "auto"),
        )


@dataclasses.dataclass(frozen=True)
class Status:
    """A provider task as last seen. ``status`` is one of Runway's six statuses."""

    status: str
    progress: float | None = None
    output: tuple[str, ...] = ()
    failure: str | None = None
    failure_code: str | None = None
    cost_credits: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class ProviderError(Exception):
    """Base of every provider failure; ``failure_code``/``message`` use Runway's vocabulary."""

    failure_code = "INTERNAL"

    def __init__(self, message: str, *, failure_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if failure_code is not None:
            self.failure_code = failure_code


class Transient(ProviderError):
    """Worth retrying later (timeouts, connection errors, 429/502/503/504).

    ``retry_after`` is the provider's own hint in seconds (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(Transient):
    """The provider has no room for another job now (429 on create, concurrency full):
    the task waits as THROTTLED and is submitted again later."""


class Rejected(ProviderError):
    """The provider refused the job for good (bad input, bad credentials): FAILED."""


class UnknownTask(ProviderError):
    """The provider does not know this task id (404)."""


class Provider(Protocol):
    """A remote provider. One instance per worker process, sharing one HTTP client."""

    name: str

    async def submit(self, job: Job) -> str:
        """Start the job upstream; the provider's task id. Raises a :class:`ProviderError`."""
        ...

    async def poll(self, provider_task_id: str, *, age: float) -> Status:
        """The task's current state. ``age`` is seconds since it was submitted (some
        providers briefly deny that a fresh task exists)."""
        ...

    async def cancel(self, provider_task_id: str) -> None:
        """Cancel (or delete) the task upstream; an unknown task counts as done."""
        ...

    async def capacity(self) -> int | None:
        """How many jobs the provider runs at once for this deployment, if it says."""
        ...

    async def upload(self, path: Any, filename: str) -> str:
        """Hand a local file over; a URI the provider accepts in ``Job``."""
        ...
