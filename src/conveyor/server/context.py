"""What every route needs: the engine and the server's own helpers, one instance per app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar, cast

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from conveyor.engine import Engine
from conveyor.hostmetrics import SystemMetrics
from conveyor.server.settings import ServerSettings
from conveyor.server.throughput import RollingCount
from conveyor.server.timers import Timers
from conveyor.server.waiters import Waiters

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

    @classmethod
    def build(cls, engine: Engine, settings: ServerSettings) -> ServerContext:
        return cls(
            engine=engine,
            settings=settings,
            waiters=Waiters(engine.events),
            finished=RollingCount(60),
            timers=Timers(engine, settings.timer_interval_s),
            host=SystemMetrics(settings.disk_path),
        )

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a (blocking) engine call in a worker thread: the event loop never waits on the DB."""
        return await run_in_threadpool(fn, *args, **kwargs)


def get_context(request: Request) -> ServerContext:
    return cast(ServerContext, request.app.state.conveyor)


Ctx = Annotated[ServerContext, Depends(get_context)]
