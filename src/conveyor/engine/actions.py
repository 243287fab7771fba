"""What users do to tasks: cancel, retry, delete."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from conveyor.core.models import Task
from conveyor.core.scheduling import ready_state
from conveyor.core.states import (
    CANCELLABLE_STATES,
    DELETABLE_STATES,
    RETRYABLE_STATES,
    UNSUCCESSFUL_STATES,
    Outcome,
    Reason,
    TaskState,
)
from conveyor.core.transitions import move
from conveyor.core.types import TaskId
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.engine.finishing import Ending, fail_dependents
from conveyor.errors import (
    ConflictError,
)
from conveyor.store.base import StoreTx

log = logging.getLogger(__name__)


class UserActions(EngineCore):
    def cancel(self, task_id: TaskId) -> Task:
        """Cancel a pending, queued or running task; a running one is stopped at its next heartbeat."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in CANCELLABLE_STATES:
                raise ConflictError(
                    f"task {task_id} is {task.state.value}; only pending, queued or running tasks can be cancelled"
                )
            if task.state is TaskState.RUNNING:
                self._end(
                    tx, [Ending(task, Outcome.CANCELLED, error="cancelled by user")], now, changes
                )
            else:
                move(task, TaskState.CANCELLED, now)
                task.reason = Reason.CANCELLED_BY_USER
                task.finished_at = now
                tx.update_tasks([task])
                changes.end([task])
                fail_dependents(tx, [task], now, changes)
        self.events.publish(changes)
        return task

    def retry(self, task_id: TaskId) -> Task:
        """Run a failed, timed-out or cancelled task again, with its retries restored; the tasks
        that failed only because of it wait for it again."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in RETRYABLE_STATES:
                raise ConflictError(
                    f"task {task_id} is {task.state.value}; only failed, timed-out or cancelled tasks can be retried"
                )
            self._reset(tx, [task], now, changes, check_parents=True)
        self.events.publish(changes)
        return task

    def _reset(
        self,
        tx: StoreTx,
        tasks: list[Task],
        now: datetime,
        changes: Changes,
        *,
        check_parents: bool,
    ) -> None:
        while tasks:
            parents = tx.get_tasks({d for t in tasks for d in t.depends_on})
            revived: list[Task] = []
            for task in tasks:
                blocked = _blocked_by(task, parents)
                if blocked is not None:
                    if check_parents:
                        raise ConflictError(blocked)
                    # Another dependency is still unsuccessful: the descendant stays failed
                    # (retrying that dependency revives it), rather than wait forever.
                    continue
                task.deps_left = sum(
                    1 for d in task.depends_on if parents[d].state is not TaskState.SUCCEEDED
                )
                move(task, ready_state(task.deps_left, None, now), now)
                task.not_before = None
                task.retries_used = task.deliveries = 0
                task.reason = task.error = task.result = task.finished_at = None
                if task.state is TaskState.QUEUED:
                    changes.made_ready(task.queue)
                revived.append(task)
            tx.update_tasks(revived)
            edges = tx.dependents([t.id for t in revived])
            children = tx.get_tasks({c for cs in edges.values() for c in cs}, for_update=True)
            tasks = [
                c
                for c in children.values()
                if c.state is TaskState.FAILED and c.reason is Reason.DEPENDENCY_FAILED
            ]
            check_parents = False

    def delete(self, task_id: TaskId) -> None:
        """Remove a task that is not running, with its attempts. Refused while tasks wait on it."""
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in DELETABLE_STATES:
                raise ConflictError(f"task {task_id} is running; cancel it first")
            waiting = tx.get_tasks(tx.dependents([task_id]).get(task_id, []))
            live = [t for t in waiting.values() if not t.state.is_terminal]
            if live:
                raise ConflictError(
                    f"{len(live)} task(s) wait on task {task_id} (e.g. {live[0].name or live[0].id}); "
                    "cancel or delete them first"
                )
            tx.delete_tasks([task_id])


def _blocked_by(task: Task, parents: Mapping[TaskId, Task]) -> str | None:
    """Why `task` cannot run again yet: a dependency that is unsuccessful or was deleted."""
    for dep in task.depends_on:
        parent = parents.get(dep)
        if parent is None:
            return f"dependency {dep} was deleted; task {task.id} cannot run again"
        if parent.state in UNSUCCESSFUL_STATES:
            return f"dependency {parent.name or parent.id} is {parent.state.value}; retry it first"
    return None
