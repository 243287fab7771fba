"""Read-only views the dashboard needs beyond the task and worker API: text search on task
names, a task's dependency graph, and workflows (see `dashboard.views` for what a workflow is)."""

from __future__ import annotations

from conveyor.api import operations as ops
from conveyor.api.params import GraphParams, SearchQuery, WorkflowParams, WorkflowQuery
from conveyor.api.schemas import (
    GraphNode,
    GraphOut,
    TaskOut,
    TaskSearchPage,
    WorkflowList,
    WorkflowSummary,
)
from conveyor.core.models import Task
from conveyor.server.context import ServerContext
from conveyor.server.dashboard import views
from conveyor.server.operations.base import Caller, implements
from conveyor.server.operations.tasks import task_filter


@implements(ops.SEARCH_TASKS)
async def search_tasks(ctx: ServerContext, caller: Caller, query: SearchQuery) -> TaskSearchPage:
    page = await ctx.call(
        views.search_tasks,
        ctx.engine,
        task_filter(query.state, query.queue, None, query.handler, query.label),
        query.text,
        after_seq=int(query.cursor) if query.cursor else None,
        limit=query.limit,
        max_scan=query.scan,
    )
    return TaskSearchPage(
        tasks=[TaskOut.of(t) for t in page.tasks],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        scanned=page.scanned,
    )


@implements(ops.TASK_GRAPH)
async def task_graph(ctx: ServerContext, caller: Caller, params: GraphParams) -> GraphOut:
    graph = await ctx.call(
        views.lineage, ctx.engine, params.task_id, depth=params.depth, max_nodes=params.max_nodes
    )
    return _graph_out(graph)


@implements(ops.LIST_WORKFLOWS)
async def list_workflows(ctx: ServerContext, caller: Caller, query: WorkflowQuery) -> WorkflowList:
    found, scanned = await ctx.call(
        views.recent_workflows, ctx.engine, window=query.window, limit=query.limit
    )
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


@implements(ops.GET_WORKFLOW)
async def get_workflow(ctx: ServerContext, caller: Caller, params: WorkflowParams) -> GraphOut:
    graph = await ctx.call(views.component, ctx.engine, params.task_id, max_nodes=params.max_nodes)
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
