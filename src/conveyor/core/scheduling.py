"""Readiness, ordering and resource fit: which tasks may run, in what order, on which worker."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from conveyor.core.models import Task
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.core.types import Token, WorkerId


def start_time(spec: TaskSpec, now: datetime) -> datetime | None:
    """The earliest start a spec asks for: `run_at`, or `delay_s` after `now`."""
    if spec.run_at is not None:
        return spec.run_at
    if spec.delay_s:
        return now + timedelta(seconds=float(spec.delay_s))
    return None


def is_due(not_before: datetime | None, now: datetime) -> bool:
    return not_before is None or not_before <= now


def ready_state(deps_left: int, not_before: datetime | None, now: datetime) -> TaskState:
    """`queued` when every dependency succeeded and the start time (or backoff) has passed."""
    return TaskState.QUEUED if deps_left == 0 and is_due(not_before, now) else TaskState.PENDING


def order_key(task: Task) -> tuple[int, int]:
    """Higher priority first; ties in submission order."""
    return (-task.priority, task.seq)


def merge_in_order(candidate_lists: Iterable[Sequence[Task]]) -> list[Task]:
    """Merge per-queue candidate lists, each already in lease order, into one list in lease order."""
    return list(heapq.merge(*candidate_lists, key=order_key))


def fits(required: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """A task fits when every resource it asks for is free in at least that amount."""
    return all(amount <= free.get(name, 0.0) for name, amount in required.items() if amount > 0)


def select_for_lease(
    candidates: Sequence[Task],
    max_tasks: int,
    free: Mapping[str, float] | None,
    *,
    admit: Callable[[Task], bool] | None = None,
) -> list[Task]:
    """Take candidates in order while they fit, subtracting what each one uses.

    `free=None` means the worker does not track resources; then only tasks that ask for none fit.
    `admit` has the last word on a task that fits (its limits: conveyor.engine.limits); it is
    asked in lease order, and only about tasks that would be taken otherwise.
    """
    remaining = dict(free or {})
    chosen: list[Task] = []
    for task in candidates:
        if len(chosen) >= max_tasks:
            break
        if not fits(task.resources, remaining):
            continue
        if admit is not None and not admit(task):
            continue
        take(remaining, task.resources)
        chosen.append(task)
    return chosen


def take(free: dict[str, float], required: Mapping[str, float]) -> None:
    """Take what a task asks for out of `free`, the resources left for others."""
    for name, amount in required.items():
        if amount > 0:
            free[name] = free.get(name, 0.0) - amount


def lease_over(task: Task, now: datetime) -> bool:
    """Whether a running task's lease has run out (the store's expired_leases() agrees)."""
    return task.lease_expires_at is None or task.lease_expires_at < now


def holds_lease(task: Task, worker_id: WorkerId, token: Token) -> bool:
    """The fencing rule: only the current lease of a running task may change or extend it."""
    return (
        task.state is TaskState.RUNNING and task.attempts == token and task.worker_id == worker_id
    )
