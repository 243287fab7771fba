"""The system as a whole: status (counts, workers, throughput) and its recent history, monitor
(host metrics and their history), and health."""

from __future__ import annotations

from conveyor.api import operations as ops
from conveyor.api.params import NoParams, SinceQuery
from conveyor.api.schemas import HealthOut, MonitorOut, StatusHistoryOut, StatusOut
from conveyor.core.models import Worker
from conveyor.core.states import TaskState
from conveyor.core.types import JSON
from conveyor.engine import Engine
from conveyor.server.context import ServerContext
from conveyor.server.health import check
from conveyor.server.operations.base import Answer, Caller, implements
from conveyor.server.reads import LIVE_WORKER_STATES
from conveyor.server.version import package_version
from conveyor.store.base import StateCount


@implements(ops.STATUS)
async def status(ctx: ServerContext, caller: Caller, params: NoParams) -> StatusOut:
    counts, workers = await ctx.call(_counts_and_workers, ctx.engine)
    unschedulable = await ctx.call(ctx.unschedulable.get, ctx.engine)
    by_state = {state.value: 0 for state in TaskState}
    by_queue: dict[str, dict[str, int]] = {}
    for row in counts:
        by_state[row.state.value] += row.count
        queue = by_queue.setdefault(row.queue, {})
        queue[row.state.value] = queue.get(row.state.value, 0) + row.count
    return StatusOut(
        counts=by_state,
        queues=by_queue,
        workers_alive=sum(1 for w in workers if w.state in LIVE_WORKER_STATES),
        workers_total=len(workers),
        finished_last_minute=ctx.finished.total(),
        unschedulable=unschedulable,
    )


@implements(ops.STATUS_HISTORY)
async def status_history(ctx: ServerContext, caller: Caller, query: SinceQuery) -> StatusHistoryOut:
    monitoring = ctx.monitoring
    return StatusHistoryOut(
        interval_s=monitoring.interval_s, points=monitoring.status_history(query.since)
    )


@implements(ops.MONITOR)
async def monitor(ctx: ServerContext, caller: Caller, query: SinceQuery) -> MonitorOut:
    monitoring = ctx.monitoring
    server = await ctx.call(monitoring.server_sample)
    workers = await ctx.call(ctx.engine.workers)
    history = monitoring.history(query.since)
    return MonitorOut(
        server=server,
        workers=[_worker_metrics(w) for w in workers if w.state in LIVE_WORKER_STATES],
        interval_s=monitoring.interval_s,
        server_history=history.server_history,
        worker_history=history.worker_history,
    )


@implements(ops.HEALTH)
async def health(ctx: ServerContext, caller: Caller, params: NoParams) -> HealthOut | Answer:
    store = type(ctx.engine.store).__name__.removesuffix("Store").lower() or "unknown"
    healthy, body = await check(
        lambda: ctx.call(ctx.engine.list_tasks, limit=1),
        ctx.store_health,
        version=package_version(),
        store=store,
    )
    return body if healthy else Answer(503, body)


def _counts_and_workers(engine: Engine) -> tuple[list[StateCount], list[Worker]]:
    return engine.counts(), engine.workers()


def _worker_metrics(worker: Worker) -> dict[str, JSON]:
    return {
        "id": worker.id,
        "name": worker.name,
        "host": worker.host,
        "state": worker.state.value,
        "last_seen_at": worker.last_seen_at.isoformat(),
        "metrics": worker.metrics,
    }
