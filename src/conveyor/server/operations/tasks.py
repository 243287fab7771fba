"""Tasks: submit, list, read, wait for results, cancel, retry, delete.

Writes on the path every task takes (submit, a batch) share group commits (`ctx.write`); other
engine calls run in a worker thread (`ctx.call`), so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio

from conveyor.api import operations as ops
from conveyor.api.params import (
    NoParams,
    ResultParams,
    SubmitParams,
    TaskQuery,
    TaskRef,
    WaitParams,
)
from conveyor.api.schemas import (
    AttemptOut,
    BatchIn,
    BatchOut,
    ResultOut,
    ResultsOut,
    TaskDetail,
    TaskIds,
    TaskOut,
    TaskPage,
)
from conveyor.core.models import Task
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.core.why import WhyAnswer
from conveyor.errors import NotFoundError
from conveyor.server.context import ServerContext
from conveyor.server.operations.base import Answer, Caller, implements
from conveyor.store.base import TaskFilter


@implements(ops.SUBMIT)
async def submit(
    ctx: ServerContext, caller: Caller, params: SubmitParams, spec: TaskSpec
) -> TaskOut | Answer:
    before = ctx.engine.clock.now()
    ends_heard = ctx.waiters.ends_heard
    task = await ctx.write(ctx.engine.submit, spec)
    if params.wait > 0 and not task.state.is_terminal:
        task = await wait_for_end(ctx, task.id, params.wait, known=(task, ends_heard))
    out = TaskOut.of(task)
    # A key submitted before returns the first task: 200, not 201.
    return Answer(200, out) if spec.key is not None and task.created_at < before else out


@implements(ops.SUBMIT_BATCH)
async def submit_batch(
    ctx: ServerContext, caller: Caller, params: NoParams, batch: BatchIn
) -> BatchOut:
    tasks = await ctx.write(ctx.engine.submit_batch, batch.tasks)
    return BatchOut(tasks=[TaskOut.of(t) for t in tasks])


@implements(ops.LIST_TASKS)
async def list_tasks(ctx: ServerContext, caller: Caller, query: TaskQuery) -> TaskPage:
    tasks = await ctx.call(
        ctx.engine.list_tasks,
        task_filter(query.state, query.queue, query.name, query.handler, query.label),
        after_seq=int(query.cursor) if query.cursor else None,
        limit=query.limit,
    )
    return TaskPage(
        tasks=[TaskOut.of(t) for t in tasks],
        next_cursor=str(tasks[-1].seq) if len(tasks) == query.limit else None,
    )


@implements(ops.GET_TASK)
async def get_task(ctx: ServerContext, caller: Caller, ref: TaskRef) -> TaskDetail:
    found = await ctx.call(ctx.engine.detail, ref.task_id)
    return TaskDetail(
        **dict(TaskOut.of(found.task)),
        attempt_log=[AttemptOut.of(a) for a in found.attempts],
        dependents=found.dependents,
    )


@implements(ops.GET_RESULT)
async def get_result(ctx: ServerContext, caller: Caller, params: ResultParams) -> ResultOut:
    return ResultOut.of(await wait_for_end(ctx, params.task_id, params.wait))


@implements(ops.WAIT_RESULTS)
async def wait_results(
    ctx: ServerContext, caller: Caller, params: WaitParams, body: TaskIds
) -> ResultsOut:
    ends_heard = ctx.waiters.ends_heard
    found = await ctx.call(ctx.engine.get_many, body.ids)
    missing = [task_id for task_id in body.ids if task_id not in found]
    if missing:
        raise NotFoundError(
            f"no task {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    wait_s = min(params.wait, ctx.settings.max_wait_s)
    if wait_s > 0:
        # Each unfinished task watched at once, from the state just read: no read again unless
        # a task ended meanwhile.
        waited = await asyncio.gather(
            *(
                wait_for_end(ctx, task.id, wait_s, known=(task, ends_heard))
                for task in found.values()
                if not task.state.is_terminal
            )
        )
        found.update((task.id, task) for task in waited)
    return ResultsOut(results=[ResultOut.of(found[task_id]) for task_id in body.ids])


@implements(ops.CANCEL_TASK)
async def cancel_task(ctx: ServerContext, caller: Caller, ref: TaskRef) -> TaskOut:
    return TaskOut.of(await ctx.call(ctx.engine.cancel, ref.task_id))


@implements(ops.RETRY_TASK)
async def retry_task(ctx: ServerContext, caller: Caller, ref: TaskRef) -> TaskOut:
    return TaskOut.of(await ctx.call(ctx.engine.retry, ref.task_id))


@implements(ops.DELETE_TASK)
async def delete_task(ctx: ServerContext, caller: Caller, ref: TaskRef) -> None:
    await ctx.call(ctx.engine.delete, ref.task_id)


async def wait_for_end(
    ctx: ServerContext, task_id: str, wait_s: float, *, known: tuple[Task, int] | None = None
) -> Task:
    """The task once it has ended, or as it is after `wait_s` (capped by the server); `known`
    as Waiters.result takes it."""
    engine = ctx.engine
    read_inline = bool(getattr(engine.store, "reads_on_loop", False))

    async def read() -> Task:
        if read_inline:  # a point read by key on SQLite: cheaper in place than a thread hop
            return engine.get(task_id)
        return await ctx.call(engine.get, task_id)

    return await ctx.waiters.result(
        task_id, read, wait_s=min(wait_s, ctx.settings.max_wait_s), known=known
    )


def task_filter(
    states: list[TaskState] | None,
    queue: str | None,
    name: str | None,
    handler: str | None,
    labels: list[str] | None,
) -> TaskFilter:
    """The store's filter for a listing's query; each label is `key:value`."""
    return TaskFilter(
        states=tuple(states or ()),
        queue=queue,
        name=name,
        handler=handler,
        labels=tuple(_pair(label) for label in labels or ()),
    )


def _pair(label: str) -> tuple[str, str]:
    key, _, value = label.partition(":")
    return key, value


@implements(ops.WHY_TASK)
async def why_task(ctx: ServerContext, caller: Caller, ref: TaskRef) -> WhyAnswer:
    return await ctx.call(ctx.engine.why, ref.task_id)
