"""Read-only API views the dashboard needs beyond the task and worker API: text search on task
names, a task's dependency graph, and workflows (see `views` for what a workflow is)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.schemas import (
    GraphNode,
    GraphOut,
    TaskOut,
    TaskSearchPage,
    WorkflowList,
    WorkflowSummary,
)
from conveyor.core.models import Task
from conveyor.core.states import TaskState
from conveyor.server.context import Ctx
from conveyor.server.dashboard import views
from conveyor.server.errors import COMMON_RESPONSES, NOT_FOUND
from conveyor.store.base import TaskFilter

router = APIRouter(tags=["views"], responses=COMMON_RESPONSES)

Filter = Annotated[str | None, Query(min_length=1, max_length=200)]
MaxNodes = Annotated[int, Query(ge=1, le=2000, description="Draw at most this many tasks.")]


@router.get("/search/tasks")
async def search_tasks(
    ctx: Ctx,
    text: Annotated[
        str, Query(min_length=1, max_length=200, description="Part of the name, or an id prefix.")
    ],
    state: Annotated[list[TaskState] | None, Query(description="Repeat for several.")] = None,
    queue: Filter = None,
    handler: Filter = None,
    label: Annotated[
        str | None, Query(pattern=r"^[^:]+:", max_length=500, description="`key:value`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[1-9][0-9]{0,17}$", description="`next_cursor` of the previous page."),
    ] = None,
    scan: Annotated[
        int, Query(ge=1, le=100_000, description="Look at no more than this many tasks.")
    ] = 10_000,
) -> TaskSearchPage:
    """Tasks whose name contains `text` (any case) or whose id starts with it, newest first, with
    the same filters as `GET /tasks`. One call looks at no more than `scan` tasks, so it answers
    quickly on any database; a page may then hold fewer than `limit` tasks while `next_cursor`
    still continues the search further back."""
    key, _, value = label.partition(":") if label else (None, "", "")
    where = TaskFilter(
        states=tuple(state or ()),
        queue=queue,
        handler=handler,
        label=(key, value) if key is not None else None,
    )
    page = await ctx.call(
        views.search_tasks,
        ctx.engine,
        where,
        text,
        after_seq=int(cursor) if cursor else None,
        limit=limit,
        max_scan=scan,
    )
    return TaskSearchPage(
        tasks=[TaskOut.of(t) for t in page.tasks],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        scanned=page.scanned,
    )


@router.get("/tasks/{task_id}/graph", responses=NOT_FOUND)
async def task_graph(
    task_id: str,
    ctx: Ctx,
    depth: Annotated[int, Query(ge=1, le=50, description="Levels up and down.")] = 2,
    max_nodes: MaxNodes = 200,
) -> GraphOut:
    """The task with its dependencies (up) and dependents (down), `depth` levels each way."""
    graph = await ctx.call(views.lineage, ctx.engine, task_id, depth=depth, max_nodes=max_nodes)
    return _graph_out(graph)


@router.get("/workflows")
async def list_workflows(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    window: Annotated[
        int, Query(ge=1, le=20_000, description="How many of the newest tasks to look at.")
    ] = 2000,
) -> WorkflowList:
    """Recent workflows (tasks linked by dependencies), the most recently updated first."""
    found, scanned = await ctx.call(views.recent_workflows, ctx.engine, window=window, limit=limit)
    return WorkflowList(
        workflows=[
            WorkflowSummary(
                id=w.id,
                name=w.name,
                tasks=len(w.tasks),
                counts=dict(sorted(_count_states(w.tasks).items())),
                created_at=min(t.created_at for t in w.tasks),
                updated_at=max(t.updated_at for t in w.tasks),
                complete=w.complete,
            )
            for w in found
        ],
        scanned=scanned,
    )


@router.get("/workflows/{task_id}", responses=NOT_FOUND)
async def get_workflow(task_id: str, ctx: Ctx, max_nodes: MaxNodes = 500) -> GraphOut:
    """The whole workflow of a task: every task linked to it by dependencies, either way."""
    graph = await ctx.call(views.component, ctx.engine, task_id, max_nodes=max_nodes)
    out = _graph_out(graph)
    out.name = views.workflow_name(sorted(graph.tasks.values(), key=lambda t: t.seq))
    return out


def _count_states(tasks: list[Task]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    return counts


def _graph_out(graph: views.Graph) -> GraphOut:
    return GraphOut(
        root=graph.root,
        nodes=[
            GraphNode(
                id=t.id,
                name=t.name,
                handler=t.handler,
                queue=t.queue,
                state=t.state,
                reason=t.reason,
                created_at=t.created_at,
                started_at=t.started_at,
                finished_at=t.finished_at,
            )
            for t in sorted(graph.tasks.values(), key=lambda t: t.seq)
        ],
        edges=graph.edges(),
        truncated=graph.truncated,
    )
