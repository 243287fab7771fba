"""Workers: register, heartbeat, lease and report (the worker side); list, read, deregister.

A deregistered worker is gone from the API: reading or deregistering it again is 404, and it is
no longer listed; its heartbeats and leases are 409 (register again). Dead workers (silent too
long) stay listed until they are deregistered, so that the dashboard can show them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from conveyor.api import operations as ops
from conveyor.api.params import DeregisterParams, NoParams, WorkerRef
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
from conveyor.core.scheduling import take
from conveyor.server import reads
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Answer, Caller, CallerGone, implements
from conveyor.server.reports import acks_out, engine_reports
from conveyor.server.waiters import Granted

T = TypeVar("T")


@implements(ops.REGISTER_WORKER)
async def register_worker(
    ctx: ServerContext, caller: Caller, params: NoParams, body: RegisterIn
) -> RegisterOut:
    worker = await ctx.call(
        ctx.engine.register_worker,
        name=body.name,
        host=body.host,
        pid=body.pid,
        concurrency=body.concurrency,
        queues=body.queues,
        resources=body.resources,
        capabilities=body.capabilities,
        labels=body.labels,
    )
    ctx.metrics.worker_registered(worker)  # its queues are label values from now on
    settings = ctx.engine.settings
    return RegisterOut(
        id=worker.id,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        lease_s=settings.lease_s,
        secret=ctx.identities.issue(worker.id),
    )


@implements(ops.HEARTBEAT)
async def heartbeat(
    ctx: ServerContext, caller: Caller, ref: WorkerRef, body: HeartbeatIn
) -> HeartbeatOut:
    held = [(lease.task_id, lease.token) for lease in body.running]

    async def beat() -> HeartbeatOut:
        reply = await ctx.call(ctx.engine.heartbeat, ref.worker_id, held, body.metrics)
        return HeartbeatOut(
            stop=reply.stop,
            drain=reply.drain,
            hand_back=reply.hand_back,
            lease_s=ctx.engine.settings.lease_s,
        )

    def says_something(answer: HeartbeatOut) -> bool:
        return bool(answer.stop or answer.drain)

    wait_s = min(float(body.wait_s), ctx.settings.max_wait_s)
    if wait_s <= 0:
        return await beat()
    return await until_gone(
        caller,
        ctx.waiters.orders(ref.worker_id, beat, says_something, wait_s=wait_s),
    )


@implements(ops.LEASE)
async def lease(ctx: ServerContext, caller: Caller, ref: WorkerRef, body: LeaseIn) -> LeaseOut:
    """One answer, or with `follow` on the persistent connection, one per grant, each pushed
    as it comes, until `body.max` tasks have gone or a wait has passed with none: a worker that
    follows sends one call for many tasks instead of one each."""
    engine = ctx.engine
    room, free = body.max, body.free
    asked = True

    async def attempt() -> list[Assignment]:
        # The first attempt answers the worker asking now; a later one, woken by a task that
        # got ready, leases only to a worker heard from within a lease's time: one paused
        # (SIGSTOP, a stalled VM) that long has lost its leases and would sit on new ones too.
        # The first looks before it leases: a worker asks as soon as it has room, mostly to
        # find nothing yet; a woken attempt was woken by a task that got ready.
        nonlocal asked
        first, asked = asked, False
        return await ctx.write(
            engine.lease,
            ref.worker_id,
            room,
            queues=body.queues,
            free=free,
            seen_within_s=None if first else engine.settings.lease_s,
            look_first=first,
        )

    async def worker_queues() -> list[str]:
        return (await ctx.call(engine.worker, ref.worker_id)).queues

    async def push(granted: Granted[Assignment]) -> bool:
        """Send a grant ahead, and go on, unless it used up the room (then it is the answer)."""
        nonlocal room, free
        room -= len(granted.tasks)
        if room <= 0 or caller.push is None or (caller.stopped and caller.stopped.is_set()):
            return False
        await caller.push(_answer(ctx, granted))
        free = _less(free, granted.tasks)
        return True

    # A worker that dies mid-poll (SIGKILL, a crash) leaves its poll behind: it must not go on
    # to lease tasks that nobody will run, so the poll ends when its connection does. One that
    # asks a following call to stop (its room shrank) gets its last answer at once.
    following = body.follow and caller.push is not None
    granted = await until_gone(
        caller,
        ctx.waiters.lease(
            attempt,
            wait_s=min(float(body.wait_s), ctx.settings.max_wait_s),
            queues=body.queues,
            find_queues=worker_queues,
            keep_on=push if following else None,
            stop=caller.stopped if following else None,
        ),
    )
    return _answer(ctx, granted)


def _answer(ctx: ServerContext, granted: Granted[Assignment]) -> LeaseOut:
    return LeaseOut.of(
        granted.tasks, waited_s=granted.waited_s, lease_s=ctx.engine.settings.lease_s
    )


def _less(free: dict[str, float] | None, leased: list[Assignment]) -> dict[str, float] | None:
    """What stays free of `free` once `leased` run (None: the worker did not say)."""
    if free is None:
        return None
    left = dict(free)
    for task in leased:
        take(left, task.resources)
    return left


async def until_gone(caller: Caller, waiting: Awaitable[T]) -> T:
    """`waiting`'s outcome, unless the caller's connection ends first: then the wait ends too
    (CallerGone). A held call of a worker that died must not go on to act for it: lease tasks
    nobody will run, or extend the leases of tasks nobody runs."""
    work = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(caller.gone())
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (work, gone):
            if not pending.done():
                pending.cancel()
    if not work.done() or work.cancelled():
        raise CallerGone()
    return work.result()


@implements(ops.REPORT)
async def report(
    ctx: ServerContext, caller: Caller, ref: WorkerRef, body: ReportBatchIn
) -> ReportBatchOut | Answer:
    acks = await ctx.write(ctx.engine.report, ref.worker_id, engine_reports(body))
    out = acks_out(acks)
    return out if any(a.accepted for a in acks) else Answer(409, out)


@implements(ops.LIST_WORKERS)
async def list_workers(ctx: ServerContext, caller: Caller, params: NoParams) -> WorkerList:
    workers, running = await ctx.call(reads.workers_with_running, ctx.engine)
    return WorkerList(workers=[WorkerOut.of(w, running.get(w.id)) for w in workers])


@implements(ops.GET_WORKER)
async def get_worker(ctx: ServerContext, caller: Caller, ref: WorkerRef) -> WorkerOut:
    worker, running = await ctx.call(reads.worker_with_running, ctx.engine, ref.worker_id)
    return WorkerOut.of(worker, running)


@implements(ops.DEREGISTER_WORKER)
async def deregister_worker(ctx: ServerContext, caller: Caller, ref: DeregisterParams) -> None:
    await ctx.call(reads.deregister, ctx.engine, ref.worker_id, stopped=ref.stopped)
