"""Schedules and the timers: firing schedules, releasing due tasks, expiring leases, retention."""

from __future__ import annotations

import logging
from datetime import timedelta

from conveyor.core.pauses import PauseScope
from conveyor.core.schedules import Schedule, ScheduleSpec
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.engine.schedules import fire_due, new_schedule
from conveyor.errors import (
    ConflictError,
    NotFoundError,
)

log = logging.getLogger(__name__)


class Housekeeping(EngineCore):
    def add_schedule(self, spec: ScheduleSpec, *, replace: bool = False) -> Schedule:
        """Store a cron schedule; its first firing is the next time its cron expression names.

        Its task is checked as a submit checks one: InvalidSpecError (field `task.depends_on`) if
        it depends on a task that does not exist."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            if not replace and tx.get_schedule(spec.name, for_update=True) is not None:
                raise ConflictError(
                    f"a schedule named {spec.name!r} exists; remove it or replace it"
                )
            schedule = new_schedule(tx, spec, now, self._new_id)
            tx.put_schedule(schedule)
        return schedule

    def schedules(self) -> list[Schedule]:
        with self.store.transaction(write=False) as tx:
            return tx.list_schedules()

    def schedule(self, name: str) -> Schedule:
        with self.store.transaction(write=False) as tx:
            found = tx.get_schedule(name)
        if found is None:
            raise NotFoundError(f"no schedule {name!r}")
        return found

    def remove_schedule(self, name: str) -> None:
        with self.store.transaction() as tx:
            if not tx.delete_schedule(name):
                raise NotFoundError(f"no schedule {name!r}")
            tx.delete_pause(PauseScope.SCHEDULE, name)  # a new schedule of that name starts afresh

    def fire_schedules(self) -> int:
        """Submit the tasks of due schedules (a timer). Safe to run on several servers at once."""
        changes = Changes()
        with self.store.transaction() as tx:
            count = fire_due(
                self.store, tx, self.clock.now(), self.settings.timer_batch, self._new_id, changes
            )
        self.events.publish(changes)
        return count

    def maintain(self) -> int:
        """Store housekeeping, and retention: delete tasks finished more than retention_s ago
        (never one that a live task still waits on). Returns how many tasks were deleted."""
        self.store.maintain()
        if self.settings.retention_s is None:
            return 0
        cutoff = self.clock.now() - timedelta(seconds=self.settings.retention_s)
        with self.store.transaction() as tx:
            old = tx.finished_before(cutoff, self.settings.timer_batch)
            edges = tx.dependents([t.id for t in old])
            children = tx.get_tasks({c for cs in edges.values() for c in cs})
            needed = {
                p
                for p, cs in edges.items()
                if any(not children[c].state.is_terminal for c in cs if c in children)
            }
            doomed = [t.id for t in old if t.id not in needed]
            tx.delete_tasks(doomed)
            tx.delete_workers_gone_before(cutoff)
        if doomed:
            log.info("retention deleted finished tasks", extra={"count": len(doomed)})
        return len(doomed)
