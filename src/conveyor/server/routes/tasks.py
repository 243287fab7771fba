"""Client side, tasks: submit, list, read, wait for results, cancel, retry, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from conveyor.api.schemas import (
    API_PREFIX,
    AttemptOut,
    BatchIn,
    BatchOut,
    ResultOut,
    TaskDetail,
    TaskOut,
    TaskPage,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.server.context import Ctx
from conveyor.server.errors import COMMON_RESPONSES, CONFLICT, NOT_FOUND, links
from conveyor.store.base import TaskFilter

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=COMMON_RESPONSES)


def _task_links(status: int, source: str) -> dict[int | str, dict[str, object]]:
    task = f"{API_PREFIX}/tasks/{{task_id}}"
    return links(
        status,
        source,
        GetTask=("get", task, "task_id"),
        GetResult=("get", f"{task}/result", "task_id"),
        CancelTask=("post", f"{task}/cancel", "task_id"),
        RetryTask=("post", f"{task}/retry", "task_id"),
        DeleteTask=("delete", task, "task_id"),
        GetGraph=("get", f"{task}/graph", "task_id"),
        GetWorkflow=("get", f"{API_PREFIX}/workflows/{{task_id}}", "task_id"),
    )


Filter = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": TaskOut, "description": "The key was used before: the first task."},
        **_task_links(201, "$response.body#/id"),
    },
)
async def submit_task(
    spec: TaskSpec,
    ctx: Ctx,
    response: Response,
    wait: Annotated[
        float,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Seconds to wait for the task to end before answering (at most 60): "
            "submit and result in one call. The answer shows the task as it is then.",
        ),
    ] = 0,
) -> TaskOut:
    """Submit one task. A spec whose `key` was submitted before returns the first task (200)."""
    before = ctx.engine.clock.now()
    ends_heard = ctx.waiters.ends_heard
    task = await ctx.call(ctx.engine.submit, spec)
    if spec.key is not None and task.created_at < before:
        response.status_code = 200
    if wait > 0 and not task.state.is_terminal:
        task = await ctx.waiters.result(
            task.id,
            lambda: ctx.call(ctx.engine.get, task.id),
            wait_s=min(wait, ctx.settings.max_wait_s),
            known=(task, ends_heard),
        )
    return TaskOut.of(task)


@router.post("/batch", status_code=201, responses=_task_links(201, "$response.body#/tasks/0/id"))
async def submit_batch(batch: BatchIn, ctx: Ctx) -> BatchOut:
    """Submit many tasks, all or none; `depends_on` may name other tasks of the batch."""
    tasks = await ctx.call(ctx.engine.submit_batch, batch.tasks)
    return BatchOut(tasks=[TaskOut.of(t) for t in tasks])


@router.get("")
async def list_tasks(
    ctx: Ctx,
    state: Annotated[list[TaskState] | None, Query(description="Repeat for several.")] = None,
    queue: Filter = None,
    name: Filter = None,
    handler: Filter = None,
    label: Annotated[
        str | None, Query(pattern=r"^[^:]+:", max_length=500, description="`key:value`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[1-9][0-9]{0,17}$", description="`next_cursor` of the previous page."),
    ] = None,
) -> TaskPage:
    """Tasks, newest first, a page at a time."""
    key, _, value = label.partition(":") if label else (None, "", "")
    where = TaskFilter(
        states=tuple(state or ()),
        queue=queue,
        name=name,
        handler=handler,
        label=(key, value) if key is not None else None,
    )
    after = int(cursor) if cursor else None
    tasks = await ctx.call(ctx.engine.list_tasks, where, after_seq=after, limit=limit)
    return TaskPage(
        tasks=[TaskOut.of(t) for t in tasks],
        next_cursor=str(tasks[-1].seq) if len(tasks) == limit else None,
    )


@router.get("/{task_id}", responses=NOT_FOUND)
async def get_task(task_id: str, ctx: Ctx) -> TaskDetail:
    """One task with its attempts and the tasks that depend on it."""
    found = await ctx.call(ctx.engine.detail, task_id)
    return TaskDetail(
        **dict(TaskOut.of(found.task)),
        attempt_log=[AttemptOut.of(a) for a in found.attempts],
        dependents=found.dependents,
    )


@router.get("/{task_id}/result", responses=NOT_FOUND)
async def get_result(
    task_id: str,
    ctx: Ctx,
    wait: Annotated[
        float,
        Query(ge=0, allow_inf_nan=False, description="Seconds to wait for the end (at most 60)."),
    ] = 0,
) -> ResultOut:
    """The task's result; with `wait`, answers as soon as the task ends, or after `wait` seconds
    with `done: false`."""
    task = await ctx.waiters.result(
        task_id,
        lambda: ctx.call(ctx.engine.get, task_id),
        wait_s=min(wait, ctx.settings.max_wait_s),
    )
    return ResultOut.of(task)


@router.post("/{task_id}/cancel", responses=NOT_FOUND | CONFLICT)
async def cancel_task(task_id: str, ctx: Ctx) -> TaskOut:
    """Cancel a pending, queued or running task (a running one is killed at its next heartbeat)."""
    return TaskOut.of(await ctx.call(ctx.engine.cancel, task_id))


@router.post("/{task_id}/retry", responses=NOT_FOUND | CONFLICT)
async def retry_task(task_id: str, ctx: Ctx) -> TaskOut:
    """Run a failed, timed-out or cancelled task again."""
    return TaskOut.of(await ctx.call(ctx.engine.retry, task_id))


@router.delete("/{task_id}", status_code=204, responses=NOT_FOUND | CONFLICT)
async def delete_task(task_id: str, ctx: Ctx) -> Response:
    """Remove a task that is not running, with its attempts."""
    await ctx.call(ctx.engine.delete, task_id)
    return Response(status_code=204)
