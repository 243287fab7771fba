"""What every route needs: the engine and the server's own helpers, one instance per app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, ParamSpec, TypeVar, cast

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from conveyor.engine import Engine
from conveyor.engine.group_commit import GroupCommit
from conveyor.errors import StoreError
from conveyor.hostmetrics import SystemMetrics
from conveyor.server.health import StoreHealth
from conveyor.server.metric_labels import MetricLabels
from conveyor.server.metrics import ServerMetrics
from conveyor.server.monitoring import Monitoring
from conveyor.server.settings import ServerSettings
from conveyor.server.throughput import RollingCount
from conveyor.server.timers import Timers
from conveyor.server.unschedulable import UnschedulableCount
from conveyor.server.waiters import Waiters
from conveyor.server.worker_identity import WorkerSecrets

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerContext:
    engine: Engine
    settings: ServerSettings
    waiters: Waiters
    finished: RollingCount
    timers: Timers
    host: SystemMetrics
    metrics: ServerMetrics
    monitoring: Monitoring
    commits: GroupCommit
    identities: WorkerSecrets
    store_health: StoreHealth = field(default_factory=StoreHealth)
    """What the latest writes said about the store (for /health)."""
    unschedulable: UnschedulableCount = field(default_factory=UnschedulableCount)
    """Tasks no live worker could ever take, for /status and /metrics (read at most so often)."""

    @classmethod
    def build(
        cls, engine: Engine, settings: ServerSettings, *, version: str = "unknown"
    ) -> ServerContext:
        host = SystemMetrics(settings.disk_path)
        store = type(engine.store).__name__.removesuffix("Store").lower() or "unknown"
        return cls(
            engine=engine,
            settings=settings,
            waiters=Waiters(engine.events),
            finished=RollingCount(60),
            timers=Timers(engine, settings.timer_interval_s),
            host=host,
            metrics=ServerMetrics(
                version=version,
                store=store,
                labels=MetricLabels(settings.metrics_queues, settings.metrics_handlers),
            ),
            monitoring=Monitoring(engine, host),
            commits=GroupCommit(
                engine.store,
                engine.events,
                inline_when_idle=bool(getattr(engine.store, "writes_on_loop", False)),
                committers=int(getattr(engine.store, "parallel_writes", 1)),
            ),
            identities=WorkerSecrets(engine.worker_identity_key()),
        )

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a (blocking) engine call in a worker thread: the event loop never waits on the DB."""
        return await run_in_threadpool(self._timed, fn, *args, **kwargs)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an engine write in the committer's next group commit: concurrent requests share
        one transaction, and each is answered once it has committed."""
        try:
            result = await self.commits.run(self._timed, fn, *args, **kwargs)
        except StoreError as exc:
            self.store_health.write_failed(exc)
            raise
        self.store_health.write_succeeded()
        return result

    def _timed(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.metrics.observe_call(
                getattr(fn, "__name__", "call"), time.perf_counter() - started
            )


def get_context(request: Request) -> ServerContext:
    return cast(ServerContext, request.app.state.conveyor)


Ctx = Annotated[ServerContext, Depends(get_context)]
