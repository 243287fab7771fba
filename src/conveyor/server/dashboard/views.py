"""Reads for the dashboard: text search, dependency graphs and workflows. Blocking; run in a thread.

Each answer costs a bounded amount of work whatever the size of the database: a search looks at
no more than `max_scan` tasks per call and hands back a cursor to continue; a graph stops at
`max_nodes`; the workflow list looks at the newest `window` tasks only.

**Workflows.** A workflow is a connected component of the dependency graph: the tasks of a batch
or job file linked by `depends_on`, and whatever was submitted later to depend on them. It is
identified by any of its tasks; lists name it by its earliest task (the first submitted). Its
display name is, in order: the `workflow` label of its tasks, the prefix of their idempotency
keys (a job file keys its tasks `FILE:TASK`), the name of its earliest task.

Graphs read the store in one read-only transaction, so that a graph is one consistent snapshot
and each level of a walk costs a few batched queries, not one query per task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from conveyor.core.models import Task
from conveyor.core.types import TaskId
from conveyor.engine import Engine
from conveyor.errors import NotFoundError
from conveyor.store.base import StoreTx, TaskFilter

PAGE = 1000  # the most list_tasks gives at once
WORKFLOW_LABEL = "workflow"


@dataclass(frozen=True, slots=True)
class SearchPage:
    tasks: list[Task]
    next_cursor: int | None
    scanned: int


def search_tasks(
    engine: Engine,
    where: TaskFilter,
    text: str,
    *,
    after_seq: int | None,
    limit: int,
    max_scan: int,
) -> SearchPage:
    """Tasks matching `where` whose name contains `text` (any case) or whose id starts with it,
    newest first. Stops after `limit` matches or `max_scan` tasks, whichever comes first; the
    cursor then continues after the last task looked at."""
    needle = text.casefold()
    found: list[Task] = []
    scanned = 0
    after = after_seq
    while scanned < max_scan:
        want = min(PAGE, max_scan - scanned)
        page = engine.list_tasks(where, after_seq=after, limit=want)
        for task in page:
            scanned += 1
            if needle in (task.name or "").casefold() or task.id.startswith(needle):
                found.append(task)
                if len(found) == limit:
                    return SearchPage(found, task.seq, scanned)
        if len(page) < want:
            return SearchPage(found, None, scanned)
        after = page[-1].seq
    return SearchPage(found, after, scanned)


@dataclass(frozen=True, slots=True)
class Graph:
    root: TaskId
    tasks: dict[TaskId, Task]
    truncated: bool

    def edges(self) -> list[tuple[TaskId, TaskId]]:
        """(dependency, dependent) pairs between the graph's tasks."""
        return [
            (parent, task.id)
            for task in self.tasks.values()
            for parent in task.depends_on
            if parent in self.tasks
        ]


def lineage(engine: Engine, task_id: TaskId, *, depth: int, max_nodes: int) -> Graph:
    """The task, its dependencies up to `depth` levels up and its dependents `depth` levels down."""
    with engine.store.transaction(write=False) as tx:
        root = _root(tx, task_id)
        tasks = {root.id: root}
        truncated = False
        for up in (True, False):
            frontier = [root]
            for _ in range(depth):
                ids = _parents(frontier) if up else _children(tx, frontier)
                frontier, cut = _admit(tx, tasks, ids, max_nodes)
                truncated |= cut
                if not frontier:
                    break
            if frontier:  # the walk stopped at `depth`: is there more beyond?
                beyond = _parents(frontier) if up else _children(tx, frontier)
                truncated |= bool(beyond - tasks.keys())
        return Graph(root.id, tasks, truncated)


def component(engine: Engine, task_id: TaskId, *, max_nodes: int) -> Graph:
    """The workflow of a task: every task linked to it by dependencies, either way."""
    with engine.store.transaction(write=False) as tx:
        root = _root(tx, task_id)
        tasks = {root.id: root}
        frontier = [root]
        truncated = False
        while frontier and not truncated:
            ids = _parents(frontier) | _children(tx, frontier)
            frontier, truncated = _admit(tx, tasks, ids, max_nodes)
        return Graph(root.id, tasks, truncated)


def _root(tx: StoreTx, task_id: TaskId) -> Task:
    task = tx.get_tasks([task_id]).get(task_id)
    if task is None:
        raise NotFoundError(f"no task {task_id}")
    return task


def _parents(tasks: Iterable[Task]) -> set[TaskId]:
    return {parent for task in tasks for parent in task.depends_on}


def _children(tx: StoreTx, tasks: Iterable[Task]) -> set[TaskId]:
    edges = tx.dependents([task.id for task in tasks])
    return {child for children in edges.values() for child in children}


def _admit(
    tx: StoreTx, tasks: dict[TaskId, Task], ids: set[TaskId], max_nodes: int
) -> tuple[list[Task], bool]:
    """Add the tasks `ids` not yet in `tasks`, up to `max_nodes` in all; returns the new ones and
    whether some were left out. A deleted dependency is simply absent."""
    new = sorted(ids - tasks.keys())  # time-ordered ids: the oldest are kept when cut
    room = max(0, max_nodes - len(tasks))
    fetched = tx.get_tasks(new[:room]) if new and room else {}
    tasks.update(fetched)
    return list(fetched.values()), len(new) > room


@dataclass(frozen=True, slots=True)
class Workflow:
    id: TaskId
    name: str
    tasks: list[Task]
    complete: bool


def recent_workflows(engine: Engine, *, window: int, limit: int) -> tuple[list[Workflow], int]:
    """Workflows among the newest `window` tasks, the most recently updated first, and how many
    tasks were looked at. A workflow is complete unless some of its tasks are older than that."""
    recent: list[Task] = []
    after: int | None = None
    while len(recent) < window:
        want = min(PAGE, window - len(recent))
        page = engine.list_tasks(TaskFilter(), after_seq=after, limit=want)
        recent.extend(page)
        if len(page) < want:
            break
        after = page[-1].seq
    known = {task.id: task for task in recent}
    groups = _components(recent)
    workflows: list[Workflow] = []
    for members in groups:
        tasks = [known[m] for m in members if m in known]
        if len(members) < 2 or not tasks:
            continue
        complete = len(tasks) == len(members)
        tasks.sort(key=lambda t: t.seq)
        workflows.append(Workflow(tasks[0].id, workflow_name(tasks), tasks, complete))
    workflows.sort(key=lambda w: max(t.updated_at for t in w.tasks), reverse=True)
    return workflows[:limit], len(recent)


def _components(tasks: list[Task]) -> list[set[TaskId]]:
    """Connected components of the tasks and the dependencies they name (union-find)."""
    parent: dict[TaskId, TaskId] = {}

    def find(x: TaskId) -> TaskId:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for task in tasks:
        find(task.id)
        for dep in task.depends_on:
            a, b = find(task.id), find(dep)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[TaskId, set[TaskId]] = {}
    for node in list(parent):
        groups.setdefault(find(node), set()).add(node)
    return list(groups.values())


def workflow_name(tasks: list[Task]) -> str:
    """A workflow's label, job file name (its keys' prefix) or first task's name; oldest first."""
    labels = Counter(t.labels[WORKFLOW_LABEL] for t in tasks if WORKFLOW_LABEL in t.labels)
    if labels:
        return labels.most_common(1)[0][0]
    prefixes = Counter(t.key.partition(":")[0] for t in tasks if t.key and ":" in t.key)
    if prefixes:
        return prefixes.most_common(1)[0][0]
    first = tasks[0]
    return first.name or f"{first.handler} {first.id[:8]}"
