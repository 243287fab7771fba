"""Bulk actions (start one, follow its progress) and the failure groups the dashboard retries.

Starting an action stores it and hands it to this server's background jobs (BulkJobs, owned by
the timers): the answer comes at once, and `GET /bulk/{id}` follows it from any server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.api import operations as ops
from conveyor.api.params import BulkRef, FailureQuery, NoParams
from conveyor.api.schemas import (
    FAILURE_STATES,
    BulkIn,
    BulkOut,
    FailureGroupOut,
    FailuresOut,
    TaskOut,
    TaskSelection,
)
from conveyor.core.bulk import BulkState
from conveyor.core.states import Reason, TaskState
from conveyor.engine.bulk import BulkPlan
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Answer, Caller, implements
from conveyor.store.base import BulkRecord, TaskFilter

POLL_S = 0.25
"""How often a waiting `GET /bulk/{id}` looks at the record again."""


@implements(ops.BULK_ACTION)
async def bulk_action(
    ctx: ServerContext, caller: Caller, params: NoParams, body: BulkIn
) -> BulkOut | Answer:
    where = task_filter(body.filter)
    if body.dry_run:
        plan = await ctx.call(
            ctx.engine.plan_bulk, body.action, where, key=body.key, chunk_size=body.chunk_size
        )
        return Answer(200, bulk_out(plan.record, plan=plan))
    record, created = await ctx.call(
        ctx.engine.start_bulk, body.action, where, key=body.key, chunk_size=body.chunk_size
    )
    if record.state is BulkState.RUNNING:
        # Asked again with its key: run it here now, whoever held it (a server gone, perhaps).
        ctx.timers.bulk.run(record.id, take_over=not created)
    out = bulk_out(record)
    return out if created else Answer(200, out)


@implements(ops.GET_BULK)
async def get_bulk(ctx: ServerContext, caller: Caller, params: BulkRef) -> BulkOut:
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + min(params.wait, ctx.settings.max_wait_s)
    while True:
        record = await ctx.call(ctx.engine.bulk, params.bulk_id)
        left_s = give_up_at - loop.time()
        if record.state is BulkState.DONE or left_s <= 0:
            return bulk_out(record)
        await asyncio.sleep(min(POLL_S, left_s))


@implements(ops.LIST_FAILURES)
async def list_failures(ctx: ServerContext, caller: Caller, query: FailureQuery) -> FailuresOut:
    found = await ctx.call(ctx.engine.failure_groups, window=query.window, limit=query.limit)
    return FailuresOut(
        groups=[
            FailureGroupOut(
                error=g.error,
                count=g.count,
                last_finished_at=g.last_finished_at,
                filter=(
                    {"state": [TaskState.FAILED.value], "reason": Reason.DEPENDENCY_FAILED.value}
                    if g.error is None
                    else {"state": [s.value for s in FAILURE_STATES], "error": g.error}
                ),
            )
            for g in found.groups
        ],
        scanned=found.scanned,
        complete=found.complete,
    )


def task_filter(selection: TaskSelection) -> TaskFilter:
    """The store's filter for a bulk action's."""
    return TaskFilter(
        states=tuple(selection.state or ()),
        queue=selection.queue,
        name=selection.name,
        handler=selection.handler,
        labels=tuple((selection.labels or {}).items()),
        reason=selection.reason,
        error=selection.error,
        ids=tuple(selection.ids or ()),
        created_after=selection.created_after,
        created_before=selection.created_before,
        finished_after=selection.finished_after,
        finished_before=selection.finished_before,
    )


def selection(where: TaskFilter) -> dict[str, Any]:
    """A stored filter as the API writes it (TaskSelection's fields, those given)."""
    given: dict[str, Any] = {
        "state": sorted(s.value for s in where.states) or None,
        "queue": where.queue,
        "name": where.name,
        "handler": where.handler,
        "labels": dict(where.labels) or None,
        "reason": where.reason.value if where.reason else None,
        "error": where.error,
        "ids": list(where.ids) or None,
    }
    for name in ("created_after", "created_before", "finished_after", "finished_before"):
        when = getattr(where, name)
        given[name] = None if when is None else when.isoformat()
    return {name: value for name, value in given.items() if value is not None}


def bulk_out(record: BulkRecord, *, plan: BulkPlan | None = None) -> BulkOut:
    return BulkOut(
        id=None if plan else record.id,
        action=record.action,
        filter=selection(record.where),
        dry_run=plan is not None,
        key=record.key,
        state=BulkState.DONE if plan else record.state,
        done=plan is not None or record.state is BulkState.DONE,
        total=record.total,
        estimate=record.estimate,
        by_state={s.value: n for s, n in sorted(plan.by_state.items())} if plan else {},
        sample=[TaskOut.of(t) for t in plan.sample] if plan else [],
        matched=record.matched,
        changed=record.changed,
        skipped=record.skipped,
        chunks=record.chunks,
        chunk_size=record.chunk_size,
        created_at=record.created_at,
        updated_at=record.updated_at,
        finished_at=record.finished_at,
        error=record.error,
    )
