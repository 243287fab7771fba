"""Leasing ready tasks to workers, and releasing the tasks whose start time has come."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import cast

from conveyor.core.models import Assignment, Attempt, Task, Worker
from conveyor.core.pauses import leasable
from conveyor.core.refs import resolve_refs
from conveyor.core.scheduling import merge_in_order, select_for_lease
from conveyor.core.states import Outcome, TaskState
from conveyor.core.transitions import move
from conveyor.core.types import JSON
from conveyor.engine.events import Changes
from conveyor.engine.finishing import Ending
from conveyor.engine.limits import LeaseLimits, hold_on_entry
from conveyor.engine.placement import Placement
from conveyor.store.base import StoreTx

MAX_SCAN = 1024
"""Ready tasks read per queue, at most, to find some that fit a worker's free resources."""
PROMOTE_BATCH = 1000
"""Due tasks released per call: bounds one transaction's work; the rest go on the next call."""


def promote_due(tx: StoreTx, now: datetime, changes: Changes) -> int:
    """Pending tasks with no dependencies left whose start time (or backoff) has passed: queued."""
    due = tx.due_pending(now, PROMOTE_BATCH)
    for task in due:
        move(task, TaskState.QUEUED, now)
        changes.made_ready(task.queue)
    hold_on_entry(tx, due, now)
    tx.update_tasks(due)
    return len(due)


def grant_leases(
    tx: StoreTx,
    worker: Worker,
    max_tasks: int,
    queues: Sequence[str],
    free: Mapping[str, float] | None,
    lease_s: float,
    now: datetime,
    changes: Changes,
    clock: Callable[[], datetime],
) -> tuple[list[Assignment], list[Ending]]:
    """Lease up to `max_tasks` tasks; returns assignments, and endings for tasks that cannot start.

    Each queue is read separately, in index order, and the lists merged: one ordered query across
    several queues would have to sort every ready task, which grows with the queue. Paused queues
    are left out (all of them while the cluster is paused), as the pauses stand in this
    transaction (StoreTx.pauses_for_lease).
    """
    queues = leasable(queues, tx.pauses_for_lease(), now)
    if not queues:
        return [], []
    limits = LeaseLimits(tx, now)
    chosen = _choose(tx, queues, max_tasks, free, Placement(tx, worker), limits)
    # On PostgreSQL `now` was read before the query above locked these rows: another server
    # may have ended their previous attempt in between, at a later time. Not before that end.
    now = max([now, *(task.updated_at for task in chosen)])
    if any(task.limits for task in chosen):
        # Nor before the end of an attempt whose slot this lease found free: that attempt's
        # end was read from its clock before its commit, and the lease read the slots after
        # that commit. So the clock is read again, after the slots (on SQLite, whose write
        # lock this lease has held from its start, that only moves it by the lease's own time).
        now = max(now, clock())
    expires = now + timedelta(seconds=lease_s)
    for task in chosen:
        move(task, TaskState.RUNNING, now)
        task.attempts += 1
        task.deliveries += 1
        task.worker_id = worker.id
        task.lease_expires_at = expires
        task.started_at = task.started_at or now
    tx.update_tasks(chosen)
    limits.settle(chosen, now)
    changes.leased.extend(chosen)
    tx.insert_attempts(
        [Attempt(t.id, t.attempts, worker.id, now, lease_expires_at=expires) for t in chosen]
    )
    results = _upstream_results(tx, [t for t in chosen if t.has_refs])
    assignments: list[Assignment] = []
    unstartable: list[Ending] = []
    for task in chosen:
        try:
            args = (
                cast(list[JSON], resolve_refs(task.args, results)) if task.has_refs else task.args
            )
            kwargs = (
                cast(dict[str, JSON], resolve_refs(task.kwargs, results))
                if task.has_refs
                else task.kwargs
            )
        except KeyError as exc:
            unstartable.append(Ending(task, Outcome.FAILED, error=f"bad $result reference: {exc}"))
            continue
        assignments.append(
            Assignment(
                task_id=task.id,
                token=task.attempts,
                handler=task.handler,
                args=args,
                kwargs=kwargs,
                timeout_s=task.timeout_s,
                lease_expires_at=expires,
                name=task.name,
                queue=task.queue,
                resources=task.resources,
            )
        )
    return assignments, unstartable


def _choose(
    tx: StoreTx,
    queues: Sequence[str],
    max_tasks: int,
    free: Mapping[str, float] | None,
    placement: Placement,
    limits: LeaseLimits,
) -> list[Task]:
    """The first `max_tasks` ready tasks, in lease order, that the worker can run (`placement`:
    the query leaves out those it cannot) and that fit `free`.

    Reads `max_tasks` rows per queue first: most tasks fit, and every row read is decoded, which
    was most of a lease's cost when it read four times what it leased. Only when tasks the worker
    cannot fit fill a whole read does it read on, in larger pages (up to MAX_SCAN rows a queue),
    so that a crowd of GPU tasks does not hide CPU work.

    Tasks held back by a full limit are out of those reads; the lines of the keys a slot was
    freed on since (`limits`, engine/limits.py) are read too, and merged in lease order.
    """
    page = max_tasks
    runnable = placement.runnable
    pages: dict[str, list[Task]] = {
        q: tx.queued_candidates(q, page, runnable=runnable) for q in queues
    }
    more = {q for q, tasks in pages.items() if len(tasks) == page}
    held = limits.held_lines(queues, page)

    def select() -> list[Task]:
        eligible = placement.eligible(merge_in_order([*pages.values(), *held]))
        return select_for_lease(eligible, max_tasks, free, admit=limits.admitter(eligible))

    chosen = select()
    scanned = page
    page = max(4 * max_tasks, 16)
    while len(chosen) < max_tasks and more and scanned < MAX_SCAN:
        for queue in list(more):
            last = pages[queue][-1]
            read = tx.queued_candidates(
                queue, page, after=(last.priority, last.seq), runnable=runnable
            )
            pages[queue] += read
            if len(read) < page:
                more.discard(queue)
        scanned += page
        chosen = select()
    return chosen


def _upstream_results(tx: StoreTx, tasks: Sequence[Task]) -> dict[str, JSON]:
    upstream = {dep for task in tasks for dep in task.depends_on}
    if not upstream:
        return {}
    return {task_id: task.result for task_id, task in tx.get_tasks(list(upstream)).items()}
