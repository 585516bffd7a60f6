"""Runway's API (version 2024-11-06) as a provider, over one shared, injected httpx client.

The client comes from :func:`service.outbound.httpx_client` (the httpx API on the
aiohttp transport, PERFORMANCE.md) or, in tests, a respx-backed client. Every call has
explicit timeouts; no call sleeps or retries in place: a 429/5xx becomes
:class:`~service.providers.base.Transient` carrying the ``Retry-After`` hint, and the
runner schedules the retry in the database (``tasks.run_at``), so a restart loses no
backoff and no worker holds a task while waiting.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from service.providers import base

log = logging.getLogger(__name__)

VERSION = "2024-11-06"
MIN_POLL_SECONDS = 5.0  # Runway asks clients not to poll a task more often
MAX_BODY = 1024 * 1024
ORG_CACHE_SECONDS = 60.0
_INPUT_WORDS = re.compile(r"asset|uri|url|image|video|face|character|reference|duration|format", re.I)


def parse_retry_after(headers: httpx.Headers | dict[str, str], now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def error_message(body: Any, status_code: int) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])[:500]
    return f"HTTP {status_code}"


def classify(status_code: int, body: Any, retry_after: float | None, *, creating: bool) -> base.ProviderError:
    """The typed error for a non-2xx answer (a pure table, see the provider tests)."""
    message = error_message(body, status_code)
    if status_code == 429:
        if creating:
            return base.Throttled(f"The provider is at capacity: {message}", retry_after=retry_after)
        return base.Transient(f"The provider is rate limiting: {message}", retry_after=retry_after)
    if status_code in (408, 409, 425) or status_code >= 500:
        return base.Transient(f"The provider answered HTTP {status_code}: {message}", retry_after=retry_after)
    if status_code == 404:
        return base.UnknownTask(f"The provider does not know this task: {message}")
    if status_code in (401, 403):
        return base.Rejected(
            f"The provider refused this deployment's API key (HTTP {status_code}): {message}",
            failure_code="INTERNAL",
        )
    code = body.get("failureCode") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code:
        code = "ASSET.INVALID" if _INPUT_WORDS.search(message) else "INTERNAL"
    return base.Rejected(f"The provider rejected the task: {message}", failure_code=code)


def parse_task(body: Any) -> base.Status:
    """A Runway task object as a :class:`~service.providers.base.Status`."""
    if not isinstance(body, dict):
        raise base.Transient("The provider sent a task that is not a JSON object")
    status = body.get("status")
    if status not in base.STATUSES:
        raise base.Transient(f"The provider sent an unknown task status {status!r}")
    progress = body.get("progress")
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        progress = None
    else:
        progress = min(1.0, max(0.0, float(progress)))
    output = body.get("output") or []
    if not isinstance(output, list):
        output = []
    cost = body.get("cost")
    credits = cost.get("credits") if isinstance(cost, dict) else None
    failure = body.get("failure")
    failure_code = body.get("failureCode")
    return base.Status(
        status=status,
        progress=progress,
        output=tuple(str(url) for url in output if isinstance(url, str)),
        failure=str(failure)[:2000] if failure else None,
        failure_code=str(failure_code)[:200] if failure_code else None,
        cost_credits=int(credits)
        if isinstance(credits, int | float) and not isinstance(credits, bool)
        else None,
    )


class RunwayProvider:
    """Runway's ``/v1`` API. Subclasses change paths, model name and envelope handling."""

    name = "runway"
    api_prefix = "/v1"
    model = "act_two"

    def __init__(
        self,
        http: httpx.AsyncClient | aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
        *,
        base_url: str,
        api_key: str | None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_concurrency: int = 0,
        clock: Any = None,
    ) -> None:
        self._client = http
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or ""
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=timeout + connect_timeout, sock_connect=connect_timeout
        )
        self.max_concurrency = max_concurrency
        self._now = clock.now if clock is not None else time.time
        self._headers = {"Authorization": f"Bearer {self.api_key}", "X-Runway-Version": VERSION}
        self._last_poll: dict[str, float] = {}
        self._capacity: tuple[float, int | None] | None = None

    # -- plumbing ---------------------------------------------------------------------
    @property
    def http(self) -> Any:
        """The injected client; a factory is called on first use (inside the running
        loop, where an aiohttp session must be created)."""
        if callable(self._client) and not isinstance(self._client, httpx.AsyncClient | aiohttp.ClientSession):
            self._client = self._client()
        return self._client

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.api_prefix}{path}"

    def unwrap(self, body: Any) -> Any:
        """The payload inside a response body (Runway: the body itself)."""
        return body

    async def _send(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        """One HTTP exchange on the injected client: ``(status, headers, body)``.

        An ``httpx.AsyncClient`` (tests: respx) or an ``aiohttp.ClientSession`` (the
        polling hot path in production: bench/poll.py measured httpx's client layers at
        ~2.6x the CPU per request of plain aiohttp on this machine kind).
        """
        if isinstance(self.http, aiohttp.ClientSession):
            try:
                async with self.http.request(
                    method,
                    url,
                    data=content,
                    headers=headers,
                    timeout=self._aiohttp_timeout,
                    allow_redirects=False,
                ) as resp:
                    if (resp.content_length or 0) > MAX_BODY:
                        raise base.Transient(f"The provider's answer was larger than {MAX_BODY} bytes")
                    return resp.status, resp.headers, await resp.content.read(MAX_BODY + 1)
            except TimeoutError:
                raise base.Transient("The provider did not answer in time") from None
            except aiohttp.ClientError as exc:
                raise base.Transient(f"Could not reach the provider: {type(exc).__name__}: {exc}") from None
        try:
            resp = await self.http.request(
                method, url, content=content, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise base.Transient(f"The provider did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise base.Transient(f"Could not reach the provider: {type(exc).__name__}: {exc}") from None
        return resp.status_code, resp.headers, resp.content

    async def _call(self, method: str, path: str, *, json: Any = None, creating: bool = False) -> Any:
        if json is not None:
            status, headers, content = await self._send(
                method,
                self.url(path),
                orjson.dumps(json),
                {**self._headers, "Content-Type": "application/json"},
            )
        else:
            status, headers, content = await self._send(method, self.url(path), None, self._headers)
        if len(content) > MAX_BODY:
            raise base.Transient(f"The provider's answer was larger than {MAX_BODY} bytes")
        body: Any = None
        if content:
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                body = None
        if status >= 300:
            retry_after = parse_retry_after(headers, self._now())
            raise self.classify(status, body, retry_after, creating=creating)
        return self.unwrap(body)

    def classify(
        self, status_code: int, body: Any, retry_after: float | None, *, creating: bool
    ) -> base.ProviderError:
        return classify(status_code, body, retry_after, creating=creating)

    # -- the interface ----------------------------------------------------------------
    def create_body(self, job: base.Job) -> dict[str, Any]:
        return {
            "model": self.model,
            "character": dict(job.character),
            "reference": dict(job.reference),
            "ratio": job.ratio,
            "seed": job.seed,
            "expressionIntensity": job.expression_intensity,
            "bodyControl": job.body_control,
            "contentModeration": {"publicFigureThreshold": job.public_figure_threshold},
        }

    async def submit(self, job: base.Job) -> str:
        body = await self._call("POST", "/character_performance", json=self.create_body(job), creating=True)
        task_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise base.Transient("The provider accepted the task without giving its id")
        return task_id

    async def poll(self, provider_task_id: str, *, age: float = 0.0) -> base.Status:
        """The task's state; refuses (as Transient) to poll one task twice within 5 s."""
        now = self._now()
        last = self._last_poll.get(provider_task_id)
        if last is not None and now - last < MIN_POLL_SECONDS:
            raise base.Transient("polled too recently", retry_after=MIN_POLL_SECONDS - (now - last))
        self._last_poll[provider_task_id] = now
        if len(self._last_poll) > 100_000:
            self._prune(now)
        status = parse_task(await self._call("GET", f"/tasks/{provider_task_id}"))
        if status.terminal:
            self._last_poll.pop(provider_task_id, None)
        return status

    def _prune(self, now: float) -> None:
        self._last_poll = {k: v for k, v in self._last_poll.items() if now - v < MIN_POLL_SECONDS}

    async def cancel(self, provider_task_id: str) -> None:
        try:
            await self._call("DELETE", f"/tasks/{provider_task_id}")
        except base.UnknownTask:
            return

    async def capacity(self) -> int | None:
        """``maxConcurrentGenerations`` for act_two from ``GET /v1/organization``, cached
        for a minute; the setting wins when set; None when the provider will not say."""
        if self.max_concurrency > 0:
            return self.max_concurrency
        now = self._now()
        if self._capacity is not None and now - self._capacity[0] < ORG_CACHE_SECONDS:
            return self._capacity[1]
        value: int | None = None
        try:
            body = await self._call("GET", "/organization")
            limit = body["tier"]["models"][self.model_key()]["maxConcurrentGenerations"]
            if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
                value = limit
        except (base.ProviderError, KeyError, TypeError):
            value = None
        self._capacity = (now, value)
        return value

    def model_key(self) -> str:
        return "act_two"

    async def upload(self, path: Any, filename: str) -> str:
        """Runway's two-step upload: ask for a slot, then POST the file to it (no auth)."""
        slot = await self._call("POST", "/uploads", json={"filename": filename, "type": "ephemeral"})
        try:
            upload_url, fields, runway_uri = slot["uploadUrl"], slot.get("fields") or {}, slot["runwayUri"]
        except (KeyError, TypeError):
            raise base.Transient("The provider's upload answer lacked uploadUrl or runwayUri") from None
        data = Path(path).read_bytes()
        form = {str(k): str(v) for k, v in fields.items()}
        if isinstance(self.http, aiohttp.ClientSession):
            payload = aiohttp.FormData()
            for key, value in form.items():
                payload.add_field(key, value)
            payload.add_field("file", data, filename=filename)
            try:
                async with self.http.post(
                    upload_url, data=payload, timeout=aiohttp.ClientTimeout(total=300, sock_connect=5)
                ) as resp:
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise base.Transient(
                    f"Uploading {filename} to the provider failed: {type(exc).__name__}"
                ) from None
        else:
            try:
                sent = await self.http.post(
                    upload_url,
                    data=form,
                    files={"file": (filename, data)},
                    timeout=httpx.Timeout(300.0, connect=5.0),
                )
            except httpx.HTTPError as exc:
                raise base.Transient(
                    f"Uploading {filename} to the provider failed: {type(exc).__name__}"
                ) from None
            status = sent.status_code
        if status >= 300:
            raise base.Transient(f"Uploading {filename} to the provider failed with HTTP {status}")
        return str(runway_uri)

    async def aclose(self) -> None:
        """The HTTP client belongs to whoever injected it."""
