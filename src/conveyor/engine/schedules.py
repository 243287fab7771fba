"""Firing cron schedules: each due schedule submits its task, once per firing, and moves on.

A due schedule is locked (SKIP LOCKED where the database has it) for the whole transaction that
submits its firings and advances its timetable, so two servers never fire the same schedule at
once; and each firing's task carries an idempotency key made of the schedule's name and the
firing time, so a firing submits at most one task even if that were to happen.

Each schedule fires in a savepoint of its own. One that cannot submit its task (its dependency
was deleted since, by hand or by retention) is marked with the error and moves on in its
timetable; the others fire as usual, and it tries again at its next firing.

A paused schedule (conveyor.core.pauses) does not fire until it is resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from conveyor.core.batch import plan_batch
from conveyor.core.pauses import paused_schedules
from conveyor.core.schedules import Schedule, ScheduleSpec, due_firings, firing_key, next_after
from conveyor.core.spec import TaskSpec
from conveyor.engine.events import Changes
from conveyor.engine.submitting import store_batch, stored_dependencies
from conveyor.errors import ConflictError, InvalidSpecError, StoreBusyError, StoreError
from conveyor.store.base import Store, StoreTx

log = logging.getLogger(__name__)

_SCHEDULE_FAULTS = (InvalidSpecError, ConflictError, StoreError)
"""What a schedule's own content can cause when it fires; anything else fails the whole pass."""


def new_schedule(
    tx: StoreTx, spec: ScheduleSpec, now: datetime, new_id: Callable[[], str]
) -> Schedule:
    """A schedule to store, its task checked as a submit would check it: a dependency on a task
    that does not exist is refused now rather than at every firing."""
    stored_dependencies(tx, plan_batch([spec.task], [new_id()]), field="task.depends_on")
    return Schedule(
        spec=spec, next_run_at=next_after(spec.cron, spec.timezone, now), created_at=now
    )


def fire_due(
    store: Store,
    tx: StoreTx,
    now: datetime,
    limit: int,
    new_id: Callable[[], str],
    changes: Changes,
) -> int:
    """Submit the tasks of every due schedule, inside `tx` (a transaction of `store`); returns
    how many tasks were submitted."""
    submitted = 0
    # A paused schedule is left as it is, its next firing due: once resumed, the firings it
    # missed meanwhile follow its misfire policy, as after an outage. Read past the paused
    # ones, so that they never take the place of schedules that can fire.
    paused = paused_schedules(tx.list_pauses(), now)
    for schedule in tx.due_schedules(now, limit + len(paused)):
        if schedule.name in paused:
            continue
        firings = due_firings(schedule.spec, schedule.next_run_at, now)
        own = Changes()
        try:
            with store.transaction() as savepoint:
                for fire in firings.times:  # one batch per firing: each task has the same name
                    batch = plan_batch([_task_for(schedule, fire)], [new_id()])
                    store_batch(savepoint, batch, now, own)
        except StoreBusyError:
            raise
        except _SCHEDULE_FAULTS as exc:
            schedule.last_error = str(exc)
            schedule.last_error_at = now
            log.warning(
                "a schedule could not submit its task; it tries again at its next firing",
                extra={"schedule": schedule.name, "error": str(exc)},
            )
        else:
            changes.merge(own)
            if firings.times:
                schedule.last_run_at = firings.times[-1]
                schedule.fired += len(firings.times)
                schedule.last_error = schedule.last_error_at = None
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
