"""The operator's controls: pause and resume queues, schedules and the whole cluster; drain and
stop workers. Each is one engine call, whose effect every server sees (it is in the database)."""

from __future__ import annotations

from conveyor.api import operations as ops
from conveyor.api.control import (
    PauseList,
    PauseOut,
    PauseParams,
    PauseQueueParams,
    PauseScheduleParams,
    QueueRef,
    ResumeOut,
    WorkerSelection,
)
from conveyor.api.params import NoParams, ScheduleRef
from conveyor.api.schemas import WorkerList, WorkerOut
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Caller, implements


@implements(ops.PAUSE_QUEUE)
async def pause_queue(ctx: ServerContext, caller: Caller, params: PauseQueueParams) -> PauseOut:
    return PauseOut.of(await ctx.call(ctx.engine.pause_queue, params.queue, until=params.until))


@implements(ops.RESUME_QUEUE)
async def resume_queue(ctx: ServerContext, caller: Caller, ref: QueueRef) -> ResumeOut:
    return ResumeOut.of(await ctx.call(ctx.engine.resume_queue, ref.queue))


@implements(ops.PAUSE_SCHEDULE)
async def pause_schedule(
    ctx: ServerContext, caller: Caller, params: PauseScheduleParams
) -> PauseOut:
    return PauseOut.of(await ctx.call(ctx.engine.pause_schedule, params.name, until=params.until))


@implements(ops.RESUME_SCHEDULE)
async def resume_schedule(ctx: ServerContext, caller: Caller, ref: ScheduleRef) -> ResumeOut:
    return ResumeOut.of(await ctx.call(ctx.engine.resume_schedule, ref.name))


@implements(ops.PAUSE_ALL)
async def pause_all(ctx: ServerContext, caller: Caller, params: PauseParams) -> PauseOut:
    return PauseOut.of(await ctx.call(ctx.engine.pause_all, until=params.until))


@implements(ops.RESUME_ALL)
async def resume_all(ctx: ServerContext, caller: Caller, params: NoParams) -> ResumeOut:
    return ResumeOut.of(await ctx.call(ctx.engine.resume_all))


@implements(ops.LIST_PAUSES)
async def list_pauses(ctx: ServerContext, caller: Caller, params: NoParams) -> PauseList:
    return PauseList(pauses=[PauseOut.of(p) for p in await ctx.call(ctx.engine.pauses)])


@implements(ops.DRAIN_WORKERS)
async def drain_workers(
    ctx: ServerContext, caller: Caller, params: NoParams, body: WorkerSelection
) -> WorkerList:
    return await _tell(ctx, body, hand_back=False)


@implements(ops.STOP_WORKERS)
async def stop_workers(
    ctx: ServerContext, caller: Caller, params: NoParams, body: WorkerSelection
) -> WorkerList:
    return await _tell(ctx, body, hand_back=True)


async def _tell(ctx: ServerContext, body: WorkerSelection, *, hand_back: bool) -> WorkerList:
    told = await ctx.call(
        ctx.engine.drain_workers,
        ids=body.ids or (),
        queue=body.queue,
        host=body.host,
        hand_back=hand_back,
    )
    return WorkerList(workers=[WorkerOut.of(w) for w in told])
