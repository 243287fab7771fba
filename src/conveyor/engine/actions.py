"""What users do to tasks: cancel, retry, delete."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
from conveyor.engine.limits import hold_on_entry
from conveyor.errors import (
    ConflictError,
)
from conveyor.store.base import StoreTx

log = logging.getLogger(__name__)


class UserActions(EngineCore):
    """Each action is written once, for a list of tasks: the single-task call passes one and
    turns a refusal into ConflictError; a bulk action (conveyor.engine.bulk) passes a chunk and
    counts the refusals as skipped."""

    def cancel(self, task_id: TaskId) -> Task:
        """Cancel a pending, queued or running task; a running one is stopped by its worker as
        soon as the worker hears (at once when a server holds its heartbeat, else at its next)."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            _refuse(self._cancel(tx, [task], now, changes))
        self.events.publish(changes)
        return task

    def retry(self, task_id: TaskId) -> Task:
        """Run a failed, timed-out or cancelled task again, with its retries restored; the tasks
        that failed only because of it wait for it again."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            _refuse(self._retry(tx, [task], now, changes))
        self.events.publish(changes)
        return task

    def delete(self, task_id: TaskId) -> None:
        """Remove a task that is not running, with its attempts. Refused while tasks wait on it."""
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            _refuse(self._delete(tx, [task]))

    # ---- the rules, for any number of tasks loaded for update ----------------------------------

    def _cancel(
        self, tx: StoreTx, tasks: Sequence[Task], now: datetime, changes: Changes
    ) -> Refusals:
        """Cancel each of `tasks` that is pending, queued or running; returns why not the others."""
        refused = {
            t.id: f"task {t.id} is {t.state.value}; only pending, queued or running tasks can be "
            "cancelled"
            for t in tasks
            if t.state not in CANCELLABLE_STATES
        }
        waiting = [t for t in tasks if t.id not in refused and t.state is not TaskState.RUNNING]
        running = [t for t in tasks if t.id not in refused and t.state is TaskState.RUNNING]
        for task in waiting:
            move(task, TaskState.CANCELLED, now)
            task.reason = Reason.CANCELLED_BY_USER
            task.finished_at = now
        tx.update_tasks(waiting)
        changes.end(waiting)
        # A running task's worker must kill it: an order for it (ending clears `worker_id`).
        changes.ordered.update(t.worker_id for t in running if t.worker_id is not None)
        # Written before the dependents fail, so that a dependent cancelled in the same call is
        # not failed as well (fail_dependents reads the tasks anew and skips ended ones).
        self._end(
            tx,
            [Ending(t, Outcome.CANCELLED, error="cancelled by user") for t in running],
            now,
            changes,
        )
        fail_dependents(tx, waiting, now, changes)
        return refused

    def _retry(
        self, tx: StoreTx, tasks: Sequence[Task], now: datetime, changes: Changes
    ) -> Refusals:
        """Run again each of `tasks` that is failed, timed out or cancelled and whose dependencies
        allow it; returns why not the others."""
        refused = {
            t.id: f"task {t.id} is {t.state.value}; only failed, timed-out or cancelled tasks can "
            "be retried"
            for t in tasks
            if t.state not in RETRYABLE_STATES
        }
        blocked, revived = self._reset(tx, [t for t in tasks if t.id not in refused], now, changes)
        # A task blocked by a dependency that was retried in the same call came back with it.
        refused.update((task_id, why) for task_id, why in blocked.items() if task_id not in revived)
        return refused

    def _reset(
        self, tx: StoreTx, tasks: list[Task], now: datetime, changes: Changes
    ) -> tuple[Refusals, set[TaskId]]:
        """Make `tasks` ready or pending again, then the tasks that failed only because of them,
        level by level. Returns why those of `tasks` blocked by a dependency were left, and the
        ids of every task revived."""
        blocked: Refusals = {}
        revived_ids: set[TaskId] = set()
        first = True
        while tasks:
            parents = tx.get_tasks({d for t in tasks for d in t.depends_on})
            revived: list[Task] = []
            for task in tasks:
                why = _blocked_by(task, parents)
                if why is not None:
                    # Another dependency is still unsuccessful: the task stays failed (retrying
                    # that dependency revives it), rather than wait forever.
                    if first:
                        blocked[task.id] = why
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
            hold_on_entry(tx, revived, now)
            tx.update_tasks(revived)
            revived_ids.update(t.id for t in revived)
            edges = tx.dependents([t.id for t in revived])
            children = tx.get_tasks({c for cs in edges.values() for c in cs}, for_update=True)
            tasks = [
                c
                for c in children.values()
                if c.state is TaskState.FAILED and c.reason is Reason.DEPENDENCY_FAILED
            ]
            first = False
        return blocked, revived_ids

    def _delete(self, tx: StoreTx, tasks: Sequence[Task]) -> Refusals:
        """Remove each of `tasks` that is not running and on which no live task waits, except
        live tasks removed in the same call; returns why not the others."""
        refused = {
            t.id: f"task {t.id} is running; cancel it first"
            for t in tasks
            if t.state not in DELETABLE_STATES
        }
        doomed = {t.id for t in tasks if t.id not in refused}
        edges = tx.dependents(doomed)
        children = tx.get_tasks({c for cs in edges.values() for c in cs})
        live = {c.id for c in children.values() if not c.state.is_terminal}
        # Refusing one task may leave a live task that another one of them waits on: repeat
        # until every task left is waited on by nothing live that stays.
        while True:
            waited_on = {
                task_id: [c for c in edges.get(task_id, ()) if c in live and c not in doomed]
                for task_id in doomed
            }
            newly = {task_id: waiting for task_id, waiting in waited_on.items() if waiting}
            if not newly:
                break
            for task_id, waiting in newly.items():
                example = children[waiting[0]]
                refused[task_id] = (
                    f"{len(waiting)} task(s) wait on task {task_id} "
                    f"(e.g. {example.name or example.id}); cancel or delete them first"
                )
                doomed.discard(task_id)
        tx.delete_tasks(sorted(doomed))
        return refused


Refusals = dict[TaskId, str]
"""Why each task an action was asked for was left as it was."""


def _refuse(refused: Refusals) -> None:
    """A single-task action's refusal, as the ConflictError it answers with."""
    if refused:
        raise ConflictError(next(iter(refused.values())))


def _blocked_by(task: Task, parents: Mapping[TaskId, Task]) -> str | None:
    """Why `task` cannot run again yet: a dependency that is unsuccessful or was deleted."""
    for dep in task.depends_on:
        parent = parents.get(dep)
        if parent is None:
            return f"dependency {dep} was deleted; task {task.id} cannot run again"
        if parent.state in UNSUCCESSFUL_STATES:
            return f"dependency {parent.name or parent.id} is {parent.state.value}; retry it first"
    return None
