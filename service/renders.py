"""Local renders of the embedded engine, as run by one worker process.

:class:`LocalRenders` is the local-engine half of :class:`service.runner.TaskRunner`:
for each claimed task it fetches the inputs, renders in a child process (so the event
loop never blocks), stores the output and finishes the task. A heartbeat renews the
claim's lease every second and writes progress (a ``task.progress`` event at most once
a second); when the heartbeat finds the claim lost (cancelled, fenced out), the render
stops. On shutdown renders get a grace period, then stop and are released so another
worker renders them at once (same seed, same output).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from service import claims, engine, media, tasks
from service.providers import local as local_mod
from service.providers import policy

if TYPE_CHECKING:
    from service.runner import TaskRunner

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 1.0  # seconds between progress writes / lease renewals of a render


@dataclasses.dataclass
class _Render:
    """A local render this process is running; ``stop``/``reason`` ask it to end."""

    claim: Any
    progress: float = 0.0
    stop: bool = False
    reason: str = ""  # lost | cancelled | shutdown | timeout


class LocalRenders:
    """The renders in flight in this worker process (at most the engine's concurrency)."""

    def __init__(self, runner: TaskRunner, engine_runner: local_mod.LocalEngine) -> None:
        self.runner = runner
        self.engine = engine_runner
        self.db = runner.db
        self.rt = runner.rt
        self.settings = runner.rt.settings
        self._renders: dict[str, _Render] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def room(self) -> int:
        """How many more renders this process may start now."""
        return self.engine.concurrency - len(self._tasks)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def wait(self, timeout: float) -> None:
        """Wait until a render ends or ``timeout`` passes."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def stop(self, task_id: str, reason: str) -> None:
        render = self._renders.get(task_id)
        if render is not None:
            render.stop, render.reason = True, reason

    async def shutdown(self, grace: float) -> None:
        """Let renders finish for ``grace`` seconds, then stop and release the rest."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=grace)
        if pending:
            for render in self._renders.values():
                render.stop, render.reason = True, "shutdown"
            await asyncio.wait(pending, timeout=30)

    def start(self, claim: Any) -> None:
        render = _Render(claim, progress=float(claim.progress or 0.0))
        self._renders[claim.id] = render
        job = asyncio.create_task(self._render(render), name=f"render-{claim.id}")
        self._tasks.add(job)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._renders.pop(claim.id, None)

        job.add_done_callback(done)

    async def _render(self, render: _Render) -> None:
        """Fetch inputs, render in a child process, store the output, finish the task.
        A heartbeat renews the lease and writes progress meanwhile."""
        claim = render.claim
        heart = asyncio.create_task(self._heartbeat(render))
        outcome: policy.Change | None = None
        release: dict[str, Any] | None = None
        try:
            spec = await self.db.read(lambda conn: tasks.get_spec(conn, claim.id))
            paths = {
                role: await media.fetch_input(
                    self.db,
                    self.rt,
                    self.runner.http,
                    account_id=claim.account_id,
                    task_id=claim.id,
                    role=role,
                    ref=spec[role],
                )
                for role in ("character", "reference")
            }
            request = engine.RenderRequest(
                character_path=paths["character"],
                character_type=spec["character"]["type"],
                reference_path=paths["reference"],
                output_path=media.work_dir(self.rt, claim.id) / "output.mp4",
                ratio=spec["ratio"],
                expression_intensity=int(spec["expressionIntensity"]),
                body_control=bool(spec["bodyControl"]),
                seed=int(spec["seed"]),
            )
            if render.stop:
                raise engine.RenderCancelled()
            await self.engine.render(
                request, on_progress=lambda p: setattr(render, "progress", p), should_stop=lambda: render.stop
            )
            if render.stop:
                raise engine.RenderCancelled()
            key = await media.store_output(
                self.db, self.rt, account_id=claim.account_id, task_id=claim.id, path=request.output_path
            )
            now = self.rt.now()
            values = {
                "status": "SUCCEEDED",
                "progress": 1.0,
                "output_keys": [key],
                "cost_credits": int(round(claim.estimated_credits)),
                "finished_at": now,
                "run_at": None,
                "lease_owner": None,
                "lease_expires_at": None,
            }
            outcome = policy.Change(values, "task.succeeded", terminal=True)
        except media.MediaError as exc:
            if exc.retryable and claim.attempts < self.settings.provider_max_retries:
                delay = policy.backoff(claim.attempts + 1, rand=self.runner.rand)
                release = {"attempts": claim.attempts + 1, "run_at": self.rt.now() + delay}
            else:
                outcome = policy.failed(exc.failure_code, exc.message, self.rt.now())
        except engine.EngineError as exc:
            outcome = policy.failed(exc.failure_code, exc.message, self.rt.now())
        except engine.RenderCancelled:
            if render.reason == "timeout":
                text = f"The render did not finish within {self.settings.task_timeout:g} seconds."
                outcome = policy.failed("INTERNAL", text, self.rt.now())
            elif render.reason == "shutdown":
                release = {"run_at": self.rt.now()}  # another worker renders it at once
        except local_mod.RenderCrashed as exc:
            log.error("render of %s crashed: %s", claim.id, exc)
            outcome = policy.failed(
                "INTERNAL", "The render failed unexpectedly; please try again.", self.rt.now()
            )
        except Exception:
            log.exception("render of %s failed", claim.id)
            outcome = policy.failed(
                "INTERNAL", "The render failed unexpectedly; please try again.", self.rt.now()
            )
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
        if outcome is not None:
            await self.runner._transition(claim, outcome, ("RUNNING",))
        elif release is not None:
            await self.runner._release(claim, release)
        if render.reason != "lost":
            await asyncio.to_thread(media.cleanup_work, self.rt, claim.id)

    async def _heartbeat(self, render: _Render) -> None:
        claim = render.claim
        lease = self.settings.worker_lease_seconds
        written, last_event = render.progress, claim.last_progress_event_at
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            now = self.rt.now()
            if policy.timed_out(claim.started_at, now, self.settings.task_timeout):
                render.stop, render.reason = True, "timeout"
                return
            progress = render.progress
            values: dict[str, Any] = {}
            event = None
            if progress != written:
                values["progress"] = progress
                if last_event is None or now - last_event >= policy.PROGRESS_EVENT_EVERY:
                    values["last_progress_event_at"] = now
                    event = "task.progress"

            def unit(conn: Any, values: dict[str, Any] = values, event: str | None = event) -> bool:
                return claims.heartbeat(
                    conn, self.rt, claim.id, fence=claim.fence, lease=lease, values=values, event=event
                )

            if not await self.db.write(unit):
                render.stop = True
                render.reason = render.reason or "lost"
                return
            written = progress
            if event is not None:
                last_event = now
