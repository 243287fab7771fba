"""The system as a whole: status (counts, workers, throughput) and its recent history, monitor
(host metrics and their history), health, and Prometheus metrics."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from conveyor.api.schemas import HealthOut, MonitorOut, StatusHistoryOut, StatusOut
from conveyor.core.models import Worker
from conveyor.core.spec import Timestamp
from conveyor.core.states import TaskState
from conveyor.core.types import JSON
from conveyor.engine import Engine
from conveyor.server.context import Ctx
from conveyor.server.errors import COMMON_RESPONSES
from conveyor.server.health import check
from conveyor.server.reads import LIVE_WORKER_STATES
from conveyor.store.base import StateCount

router = APIRouter(tags=["system"], responses=COMMON_RESPONSES)
health_router = APIRouter(tags=["system"])  # open: load balancers ask without a token
metrics_router = APIRouter(tags=["system"])


@router.get("/status")
async def status(ctx: Ctx) -> StatusOut:
    """Tasks by state and by queue, workers alive, and tasks finished in the last minute as seen
    by this server (each server counts what it committed)."""
    counts, workers = await ctx.call(_counts_and_workers, ctx.engine)
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
    )


Since = Annotated[
    Timestamp | None,
    Query(description="Only history points after this time (what a poller has not seen yet)."),
]


@router.get("/status/history")
async def status_history(ctx: Ctx, since: Since = None) -> StatusHistoryOut:
    """Tasks by state and tasks finished, every few seconds over the last minutes, as sampled by
    this server (each server keeps its own, in memory, since it started)."""
    monitoring = ctx.monitoring
    return StatusHistoryOut(
        interval_s=monitoring.interval_s, points=monitoring.status_history(since)
    )


@router.get("/monitor")
async def monitor(ctx: Ctx, since: Since = None) -> MonitorOut:
    """CPU, memory, disk, network and GPUs of the server's host, and each live worker's last
    heartbeat metrics, with the short history this server keeps of both."""
    monitoring = ctx.monitoring
    server = await ctx.call(monitoring.server_sample)
    workers = await ctx.call(ctx.engine.workers)
    history = monitoring.history(since)
    return MonitorOut(
        server=server,
        workers=[_worker_metrics(w) for w in workers if w.state in LIVE_WORKER_STATES],
        interval_s=monitoring.interval_s,
        server_history=history.server_history,
        worker_history=history.worker_history,
    )


@health_router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(ctx: Ctx) -> HealthOut | JSONResponse:
    """Whether the server can read its database (one cheap read) and write to it (its latest
    writes succeeded); see conveyor.server.health."""
    store = type(ctx.engine.store).__name__.removesuffix("Store").lower() or "unknown"
    healthy, body = await check(
        lambda: ctx.call(ctx.engine.list_tasks, limit=1),
        ctx.store_health,
        version=package_version(),
        store=store,
    )
    if healthy:
        return body
    return JSONResponse(body.model_dump(mode="json"), status_code=503)


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics (text exposition format); see conveyor.server.metrics for the list."""
    body = await ctx.call(ctx.metrics.scrape, ctx.engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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


@functools.cache
def package_version() -> str:
    # Cached: reading the installed metadata takes most of a millisecond, on every /health.
    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "unknown"
