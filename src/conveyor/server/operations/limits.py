"""Concurrency and rate limits: set, list, read and remove them. Each is one engine call, whose
effect every server sees (the limits are in the database)."""

from __future__ import annotations

from conveyor.api import operations as ops
from conveyor.api.limits import LimitIn, LimitList, LimitOut, LimitRef
from conveyor.api.params import NoParams
from conveyor.core.limiting import Limit
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Caller, implements


@implements(ops.SET_LIMIT)
async def set_limit(ctx: ServerContext, caller: Caller, ref: LimitRef, body: LimitIn) -> LimitOut:
    limit = Limit.model_construct(name=ref.limit, **dict(body))
    return LimitOut.of(await ctx.call(ctx.engine.set_limit, limit))


@implements(ops.LIST_LIMITS)
async def list_limits(ctx: ServerContext, caller: Caller, params: NoParams) -> LimitList:
    return LimitList(limits=[LimitOut.of(use) for use in await ctx.call(ctx.engine.limits)])


@implements(ops.GET_LIMIT)
async def get_limit(ctx: ServerContext, caller: Caller, ref: LimitRef) -> LimitOut:
    return LimitOut.of(await ctx.call(ctx.engine.limit, ref.limit))


@implements(ops.DELETE_LIMIT)
async def delete_limit(ctx: ServerContext, caller: Caller, ref: LimitRef) -> None:
    await ctx.call(ctx.engine.delete_limit, ref.limit)
