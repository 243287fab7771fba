"""Workers: the worker side (register, heartbeat, lease, report), the client side (list, read)
and deregistering, each its own router so that each has its own access (see `create_app`).

A deregistered worker is gone from the API: reading or deregistering it again is 404, and it is
no longer listed; its heartbeats and leases are 409 (register again). Dead workers (silent too
long) stay listed until they are deregistered, so that the dashboard can show them."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from conveyor.api.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    LeaseIn,
    LeaseOut,
    RegisterIn,
    RegisterOut,
    ReportBatchIn,
    ReportBatchOut,
    WorkerList,
    WorkerOut,
)
from conveyor.core.models import Assignment
from conveyor.server import reads
from conveyor.server.context import Ctx
from conveyor.server.errors import COMMON_RESPONSES, NOT_FOUND
from conveyor.server.reports import acks_out, engine_reports

worker_router = APIRouter(prefix="/workers", tags=["workers"], responses=COMMON_RESPONSES)
router = APIRouter(prefix="/workers", tags=["workers"], responses=COMMON_RESPONSES)
self_router = APIRouter(prefix="/workers", tags=["workers"], responses=COMMON_RESPONSES)

GONE: dict[int | str, dict[str, object]] = {
    409: {"description": "The worker was declared dead or deregistered: register again."}
}


@worker_router.post("", status_code=201)
async def register_worker(body: RegisterIn, ctx: Ctx) -> RegisterOut:
    """Register a worker; the answer says how often to heartbeat and how long leases last."""
    worker = await ctx.call(
        ctx.engine.register_worker,
        name=body.name,
        host=body.host,
        pid=body.pid,
        concurrency=body.concurrency,
        queues=body.queues,
        resources=body.resources,
    )
    settings = ctx.engine.settings
    return RegisterOut(
        id=worker.id,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        lease_s=settings.lease_s,
        secret=ctx.identities.issue(worker.id),
    )


@router.get("")
async def list_workers(ctx: Ctx) -> WorkerList:
    """Every registered worker (dead ones too, not deregistered ones), with its running tasks."""
    workers, running = await ctx.call(reads.workers_with_running, ctx.engine)
    return WorkerList(workers=[WorkerOut.of(w, running.get(w.id)) for w in workers])


@router.get("/{worker_id}", responses=NOT_FOUND)
async def get_worker(worker_id: str, ctx: Ctx) -> WorkerOut:
    """One worker with its running tasks; 404 once deregistered."""
    worker, running = await ctx.call(reads.worker_with_running, ctx.engine, worker_id)
    return WorkerOut.of(worker, running)


@self_router.delete("/{worker_id}", status_code=204, responses=NOT_FOUND)
async def deregister_worker(worker_id: str, ctx: Ctx) -> Response:
    """Deregister a worker; its running tasks are queued again at once, without spending a retry.
    An admin may deregister any worker; a worker token only itself, with its secret.

    Meant for a worker that has stopped: one that is only paused or cut off may still start a
    task it prefetched while another worker runs it. A silent worker is declared dead on its own,
    and its tasks go back as their leases run out."""
    await ctx.call(reads.deregister, ctx.engine, worker_id)
    return Response(status_code=204)


@worker_router.post("/{worker_id}/heartbeat", responses=NOT_FOUND | GONE)
async def heartbeat(worker_id: str, body: HeartbeatIn, ctx: Ctx) -> HeartbeatOut:
    """Extend the leases the worker holds; `stop` lists the executions it must kill."""
    reply = await ctx.call(
        ctx.engine.heartbeat,
        worker_id,
        [(held.task_id, held.token) for held in body.running],
        body.metrics,
    )
    return HeartbeatOut(stop=reply.stop, drain=reply.drain, lease_s=ctx.engine.settings.lease_s)


@worker_router.post("/{worker_id}/lease", responses=NOT_FOUND | GONE)
async def lease(worker_id: str, body: LeaseIn, ctx: Ctx) -> LeaseOut:
    """Lease up to `max` ready tasks. With `wait_s`, a long-poll: when nothing is ready, the
    answer comes as soon as a task is, or after `wait_s` seconds with no tasks (the server may
    cap the wait lower: `conveyor server --max-wait-s`)."""
    engine = ctx.engine

    async def attempt() -> list[Assignment]:
        return await ctx.call(engine.lease, worker_id, body.max, queues=body.queues, free=body.free)

    async def worker_queues() -> Sequence[str]:
        return (await ctx.call(engine.worker, worker_id)).queues

    granted = await ctx.waiters.lease(
        attempt,
        wait_s=min(float(body.wait_s), ctx.settings.max_wait_s),
        queues=body.queues,
        find_queues=worker_queues,
    )
    return LeaseOut.of(granted.tasks, waited_s=granted.waited_s, lease_s=engine.settings.lease_s)


@worker_router.post(
    "/{worker_id}/report",
    response_model=ReportBatchOut,
    responses={
        409: {"model": ReportBatchOut, "description": "No report was accepted: all were stale."}
    },
)
async def report(worker_id: str, body: ReportBatchIn, ctx: Ctx) -> ReportBatchOut | JSONResponse:
    """Record finished attempts. Each report is acknowledged on its own; a stale one (its lease
    was lost, re-granted or cancelled) is refused and changes nothing. 409 when none was accepted."""
    acks = await ctx.call(ctx.engine.report, worker_id, engine_reports(body))
    out = acks_out(acks)
    if any(a.accepted for a in acks):
        return out
    return JSONResponse(out.model_dump(mode="json"), status_code=409)
