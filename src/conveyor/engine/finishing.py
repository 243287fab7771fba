"""Ending attempts and tasks, and what that means for the tasks that depend on them.

Used by report, cancel, lease expiry, dead and deregistered workers: one home for these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.core.models import Task
from conveyor.core.retry import Action, decide
from conveyor.core.scheduling import ready_state
from conveyor.core.states import UNSUCCESSFUL_STATES, Outcome, Reason, TaskState
from conveyor.core.transitions import move
from conveyor.core.types import JSON, TaskId
from conveyor.engine.events import Changes
from conveyor.engine.limits import free_slots, hold_on_entry
from conveyor.store.base import AttemptEnd, StoreTx


@dataclass(frozen=True, slots=True)
class Ending:
    """An attempt's end, as reported by a worker or decided by the engine."""

    task: Task  # loaded for update, currently running
    outcome: Outcome
    result: JSON = None
    error: str | None = None
    traceback: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


def end_attempts(
    tx: StoreTx,
    endings: Sequence[Ending],
    now: datetime,
    *,
    delivery_limit: int,
    random_fraction: Callable[[], float],
    changes: Changes,
) -> None:
    """Apply the retry policy to each ending, record the attempts, and propagate to dependents."""
    succeeded: list[Task] = []
    unsuccessful: list[Task] = []
    for ending in endings:
        task = ending.task
        decision = decide(
            ending.outcome,
            retries_used=task.retries_used,
            max_retries=task.max_retries,
            deliveries=task.deliveries,
            delivery_limit=delivery_limit,
            policy=task.retry,
            random_fraction=random_fraction(),
        )
        _release_lease(task, now)
        move(task, decision.state, now)
        task.reason = decision.reason
        task.error = ending.error
        if decision.spends_retry:
            task.retries_used += 1
        if decision.action is Action.SUCCEED:
            task.result = ending.result
            task.error = None
            task.finished_at = now
            succeeded.append(task)
        elif decision.action is Action.RETRY:
            task.not_before = now + timedelta(seconds=decision.delay_s)
            move(task, ready_state(0, task.not_before, now), now)
        elif decision.action is Action.REQUEUE:
            task.not_before = None
        else:
            task.finished_at = now
            unsuccessful.append(task)
        if task.state is TaskState.QUEUED:
            changes.made_ready(task.queue)
    hold_on_entry(tx, [ending.task for ending in endings], now)
    tx.update_tasks([ending.task for ending in endings])
    tx.finish_attempts(
        [
            AttemptEnd(
                task_id=e.task.id,
                number=e.task.attempts,
                finished_at=now,
                outcome=e.outcome,
                error=e.error,
                traceback=e.traceback,
                stdout_tail=e.stdout_tail,
                stderr_tail=e.stderr_tail,
            )
            for e in endings
        ]
    )
    free_slots(tx, [ending.task for ending in endings], now, changes)
    changes.end([*succeeded, *unsuccessful])
    release_dependents(tx, succeeded, now, changes)
    fail_dependents(tx, unsuccessful, now, changes)


def _release_lease(task: Task, now: datetime) -> None:
    task.worker_id = None
    task.lease_expires_at = None
    task.updated_at = now


def release_dependents(
    tx: StoreTx, parents: Sequence[Task], now: datetime, changes: Changes
) -> None:
    """Each succeeded parent takes one off its dependents' count; those at zero become ready."""
    if not parents:
        return
    edges = tx.dependents([p.id for p in parents])
    if not edges:
        return
    decrements: dict[TaskId, int] = {}
    for child_ids in edges.values():
        for child_id in child_ids:
            decrements[child_id] = decrements.get(child_id, 0) + 1
    children_by_id = tx.get_tasks(list(decrements), for_update=True)
    updated: list[Task] = []
    for child_id, count in decrements.items():
        child = children_by_id.get(child_id)
        if child is None or child.state is not TaskState.PENDING:
            continue  # cancelled or otherwise finished meanwhile
        child.deps_left = max(0, child.deps_left - count)
        target = ready_state(child.deps_left, child.not_before, now)
        move(child, target, now)
        if target is TaskState.QUEUED:
            changes.made_ready(child.queue)
        updated.append(child)
    hold_on_entry(tx, updated, now)
    tx.update_tasks(updated)


def fail_dependents(tx: StoreTx, parents: Sequence[Task], now: datetime, changes: Changes) -> None:
    """Every live descendant of an unsuccessful task fails with reason dependency_failed, unrun."""
    frontier = [p for p in parents if p.state in UNSUCCESSFUL_STATES]
    while frontier:
        edges = tx.dependents([p.id for p in frontier])
        if not edges:
            return
        by_parent = {p.id: p for p in frontier}
        child_ids = {child for children in edges.values() for child in children}
        children = tx.get_tasks(list(child_ids), for_update=True)
        failed: list[Task] = []
        for parent_id, child_list in edges.items():
            parent = by_parent[parent_id]
            for child_id in child_list:
                child = children.get(child_id)
                if child is None or child.state not in (TaskState.PENDING, TaskState.QUEUED):
                    continue
                move(child, TaskState.FAILED, now)
                child.reason = Reason.DEPENDENCY_FAILED
                child.error = f"dependency {parent.name or parent.id} ended {parent.state.value}"
                child.finished_at = now
                failed.append(child)
        tx.update_tasks(failed)
        changes.end(failed)
        frontier = failed
