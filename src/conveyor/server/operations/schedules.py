"""Cron schedules: store, list, read, remove."""

from __future__ import annotations

from conveyor.api import operations as ops
from conveyor.api.params import NoParams, ScheduleRef
from conveyor.api.schedules import ScheduleIn, ScheduleList, ScheduleOut
from conveyor.core.schedules import ScheduleSpec
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Caller, implements


@implements(ops.ADD_SCHEDULE)
async def add_schedule(
    ctx: ServerContext, caller: Caller, params: NoParams, body: ScheduleIn
) -> ScheduleOut:
    spec = ScheduleSpec.model_validate(body.model_dump(exclude={"replace"}))
    schedule = await ctx.call(ctx.engine.add_schedule, spec, replace=body.replace)
    return ScheduleOut.of(schedule)


@implements(ops.LIST_SCHEDULES)
async def list_schedules(ctx: ServerContext, caller: Caller, params: NoParams) -> ScheduleList:
    return ScheduleList(schedules=[ScheduleOut.of(s) for s in await ctx.call(ctx.engine.schedules)])


@implements(ops.GET_SCHEDULE)
async def get_schedule(ctx: ServerContext, caller: Caller, ref: ScheduleRef) -> ScheduleOut:
    return ScheduleOut.of(await ctx.call(ctx.engine.schedule, ref.name))


@implements(ops.REMOVE_SCHEDULE)
async def remove_schedule(ctx: ServerContext, caller: Caller, ref: ScheduleRef) -> None:
    await ctx.call(ctx.engine.remove_schedule, ref.name)
