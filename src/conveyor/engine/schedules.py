"""Firing cron schedules: each due schedule submits its task, once per firing, and moves on.

A due schedule is locked (SKIP LOCKED where the database has it) for the whole transaction that
submits its firings and advances its timetable, so two servers never fire the same schedule at
once; and each firing's task carries an idempotency key made of the schedule's name and the
firing time, so a firing submits at most one task even if that were to happen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from conveyor.core.batch import plan_batch
from conveyor.core.schedules import Schedule, ScheduleSpec, due_firings, firing_key, next_after
from conveyor.core.spec import TaskSpec
from conveyor.engine.events import Changes
from conveyor.engine.submitting import store_batch
from conveyor.store.base import StoreTx


def new_schedule(spec: ScheduleSpec, now: datetime) -> Schedule:
    return Schedule(
        spec=spec, next_run_at=next_after(spec.cron, spec.timezone, now), created_at=now
    )


def fire_due(
    tx: StoreTx, now: datetime, limit: int, new_id: Callable[[], str], changes: Changes
) -> int:
    """Submit the tasks of every due schedule; returns how many tasks were submitted."""
    submitted = 0
    for schedule in tx.due_schedules(now, limit):
        firings = due_firings(schedule.spec, schedule.next_run_at, now)
        for fire in firings.times:  # one batch per firing: every firing's task has the same name
            store_batch(tx, plan_batch([_task_for(schedule, fire)], [new_id()]), now, changes)
        if firings.times:
            schedule.last_run_at = firings.times[-1]
            schedule.fired += len(firings.times)
            submitted += len(firings.times)
        schedule.next_run_at = firings.next_run_at
        tx.put_schedule(schedule)
    return submitted


def _task_for(schedule: Schedule, fire: datetime) -> TaskSpec:
    task = schedule.spec.task
    return task.model_copy(
        update={
            "key": firing_key(schedule.name, fire),
            "labels": {**task.labels, "schedule": schedule.name},
            "name": task.name or schedule.name,
        }
    )
