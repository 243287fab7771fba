"""The engine's timers, run by the server: due tasks, expired leases, silent workers.

Every `timer_interval_s` one pass runs in a worker thread (the event loop never waits on the
database). The engine's timer methods are safe when several servers run them on one database at
once, and this module keeps no state of its own between passes, so that stays true. When a
pending task's start time falls before the next pass, the pass comes early, so that a delayed
task becomes leasable on time; the release publishes an engine event, which wakes long-polls.
Each pass first bridges an outage (Engine.bridge_outage): time in which no server ran the
timers does not count against the leases and the workers' silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

from anyio import to_thread

from conveyor.engine import Engine
from conveyor.errors import StoreError
from conveyor.server.bulk_jobs import BulkJobs

log = logging.getLogger(__name__)

MIN_SLEEP_S = 0.01


class Timers:
    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.bulk = BulkJobs(engine, interval_s)
        """Bulk actions: run as this server's background jobs, resumed from any server."""

    def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timers")
            self.bulk.start()

    async def stop(self) -> None:
        """Stop after the pass in progress, if any: it runs in a thread, which cannot be
        cancelled, and must be done before the caller closes the store under it."""
        await self.bulk.stop()
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            next_due = await to_thread.run_sync(self.run_once)
            with suppress(TimeoutError):
                async with asyncio.timeout(self._sleep_s(next_due)):
                    await self._stopping.wait()

    def run_once(self) -> datetime | None:
        """One pass of every timer; returns when the next pending task is due, if known."""
        if not _step(self.bridge_outage):
            return None  # without it, the expiry timers could blame an outage on the workers
        for step in (
            self.engine.end_pauses,
            self.engine.fire_schedules,
            self.engine.release_due,
            self.engine.expire_leases,
            self.engine.expire_workers,
            self.engine.wake_limits,
            self.engine.maintain,
        ):
            _step(step)
        try:
            return self.engine.next_due_at()
        except Exception:  # only an optimisation: wait the full interval instead
            log.debug("cannot read the next due time", exc_info=True)
            return None

    def bridge_outage(self) -> float:
        # A gap of several passes, and at least a heartbeat interval: only then could
        # heartbeats have gone unheard. (Never a pass's ordinary lateness, or every pass would
        # extend every lease.)
        longer_than_s = max(3 * self.interval_s, self.engine.settings.heartbeat_interval_s)
        return self.engine.bridge_outage(longer_than_s)

    def _sleep_s(self, next_due: datetime | None) -> float:
        if next_due is None:
            return self.interval_s
        until_due = (next_due - self.engine.clock.now()).total_seconds()
        return min(self.interval_s, max(MIN_SLEEP_S, until_due))


def _step(step: Callable[[], object]) -> bool:
    """Run one timer; log its failure and carry on (the next pass retries). False if it failed."""
    try:
        step()
    except StoreError as exc:
        log.warning(
            "timer failed; retrying next pass", extra={"timer": step.__name__, "error": str(exc)}
        )
    except Exception:  # a bug must not stop the other timers or the next passes
        log.exception("timer crashed; retrying next pass", extra={"timer": step.__name__})
    else:
        return True
    return False
