"""Client side, cron schedules: store, list, read, remove."""

from __future__ import annotations

from fastapi import APIRouter, Response

from conveyor.api.schedules import ScheduleIn, ScheduleList, ScheduleOut
from conveyor.api.schemas import API_PREFIX
from conveyor.core.schedules import ScheduleSpec
from conveyor.server.context import Ctx
from conveyor.server.errors import COMMON_RESPONSES, CONFLICT, NOT_FOUND, links

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=COMMON_RESPONSES)


_SCHEDULE = f"{API_PREFIX}/schedules/{{name}}"


@router.post(
    "",
    status_code=201,
    responses=CONFLICT
    | links(
        201,
        "$response.body#/spec/name",
        GetSchedule=("get", _SCHEDULE, "name"),
        RemoveSchedule=("delete", _SCHEDULE, "name"),
    ),
)
async def add_schedule(body: ScheduleIn, ctx: Ctx) -> ScheduleOut:
    """Store a schedule; 409 if the name is taken, unless `replace` is true."""
    spec = ScheduleSpec.model_validate(body.model_dump(exclude={"replace"}))
    schedule = await ctx.call(ctx.engine.add_schedule, spec, replace=body.replace)
    return ScheduleOut.of(schedule)


@router.get("")
async def list_schedules(ctx: Ctx) -> ScheduleList:
    return ScheduleList(schedules=[ScheduleOut.of(s) for s in await ctx.call(ctx.engine.schedules)])


@router.get("/{name}", responses=NOT_FOUND)
async def get_schedule(name: str, ctx: Ctx) -> ScheduleOut:
    return ScheduleOut.of(await ctx.call(ctx.engine.schedule, name))


@router.delete("/{name}", status_code=204, responses=NOT_FOUND)
async def remove_schedule(name: str, ctx: Ctx) -> Response:
    await ctx.call(ctx.engine.remove_schedule, name)
    return Response(status_code=204)
