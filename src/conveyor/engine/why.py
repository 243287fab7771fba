"""Why a task is not running, and how many tasks no live worker could ever take: reads that
gather what conveyor.core.why needs, in one snapshot each."""

from __future__ import annotations

from datetime import datetime

from conveyor.core.limiting import Full
from conveyor.core.models import Task
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId
from conveyor.core.why import (
    AHEAD_CAP,
    Dependency,
    Seen,
    WaitCode,
    WaitReason,
    WhyAnswer,
    could_take,
    explain,
    unschedulable,
)
from conveyor.engine.base import EngineCore
from conveyor.engine.limits import limit_waits
from conveyor.errors import NotFoundError
from conveyor.store.base import StoreTx


class Why(EngineCore):
    def why(self, task_id: TaskId) -> WhyAnswer:
        """Every reason a task is not running now (NotFoundError for an unknown id)."""
        with self.store.transaction(write=False) as tx:
            now = self.clock.now()
            task = tx.get_tasks([task_id]).get(task_id)
            if task is None:
                raise NotFoundError(f"no task {task_id}")
            queued = task.state is TaskState.QUEUED
            seen = Seen(
                task=task,
                now=now,
                dependencies=_unfinished_dependencies(tx, task),
                pauses=tx.list_pauses() if queued else (),
                workers=tx.list_workers(),
                running=tx.running_counts() if queued else {},
                ahead=tx.queued_ahead(task.queue, task.priority, task.seq, AHEAD_CAP)
                if queued
                else 0,
                limits=_limit_reasons(tx, task, now) if queued else (),
            )
        reasons = explain(seen)
        return WhyAnswer(
            task_id=task.id,
            state=task.state,
            waiting=task.state in (TaskState.PENDING, TaskState.QUEUED),
            unschedulable=unschedulable(reasons),
            reasons=reasons,
        )

    def unschedulable_count(self) -> int:
        """Pending and queued tasks that no live worker could ever take: none serves their
        queue, or none of those runs their handler, has their required labels or the
        resources they ask for. Reads every waiting task's shape (grouped in the database)."""
        with self.store.transaction(write=False) as tx:
            shapes = tx.waiting_shapes()
            workers = tx.list_workers()
        return sum(
            shape.count
            for shape in shapes
            if not could_take(shape.queue, shape.handler, shape.require, shape.resources, workers)
        )


def _unfinished_dependencies(tx: StoreTx, task: Task) -> list[Dependency]:
    if task.state is not TaskState.PENDING or not task.deps_left:
        return []
    found = tx.get_tasks(task.depends_on)
    return [
        Dependency(dep.id, dep.name, dep.state)
        for dep_id in task.depends_on
        if (dep := found.get(dep_id)) is not None and dep.state is not TaskState.SUCCEEDED
    ]


def _limit_reasons(tx: StoreTx, task: Task, now: datetime) -> list[WaitReason]:
    """The full limits that keep a queued task from starting (engine/limits.py)."""
    reasons = []
    for wait in limit_waits(tx, task, now):
        limit = wait.limit
        if wait.full is Full.RATE:
            full = f"{wait.started} started in the last {limit.per_s:g} s, of {limit.rate} allowed"
        else:
            full = f"{wait.running} running, of {limit.concurrency} allowed"
        when = f"; the next may start at {wait.until.isoformat()}" if wait.until else ""
        reasons.append(
            WaitReason(
                code=WaitCode.LIMIT,
                message=f"limit {wait.key!r} is full ({full}); {wait.ahead:,} task"
                f"{'' if wait.ahead == 1 else 's'} held on it come first{when}",
                limit=wait.key,
                ahead=wait.ahead,
                until=wait.until,
            )
        )
    return reasons
