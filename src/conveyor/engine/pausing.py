"""Pausing and resuming a queue, a schedule, or the whole cluster (conveyor.core.pauses).

Pauses live in the database, so they survive restarts and hold on every server alike: each
lease reads them in its own transaction (engine/leasing.py), and each pass of the schedule
timer (engine/schedules.py). Resuming wakes the long-polls of the queues it frees, on this
server and, through the change feed, on the others. A pause that ends by itself (`until`) holds
no more from that moment on, in every lease; the timers then remove it and wake its queues'
long-polls (end_pauses).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime

from conveyor.core.pauses import Pause, PauseScope, holding
from conveyor.core.spec import NAME_PATTERN, QUEUE_PATTERN
from conveyor.core.states import TaskState
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.errors import InvalidSpecError, NotFoundError
from conveyor.store.base import StoreTx

log = logging.getLogger(__name__)


class Pausing(EngineCore):
    def pause_queue(self, queue: str, *, until: datetime | None = None) -> Pause:
        """Lease nothing more from `queue` until it is resumed, or until `until`. Its running
        tasks finish; submits to it go on. Pausing a paused queue sets its new `until`."""
        _check_name(queue, QUEUE_PATTERN, "queue")
        return self._pause(PauseScope.QUEUE, queue, until)

    def resume_queue(self, queue: str) -> Pause | None:
        """Lease from `queue` again; returns the pause it ended (None: it was not paused)."""
        return self._resume(PauseScope.QUEUE, queue)

    def pause_schedule(self, name: str, *, until: datetime | None = None) -> Pause:
        """Fire schedule `name` no more until it is resumed, or until `until`; the firings it
        misses meanwhile follow its misfire policy then. NotFoundError if there is none."""
        _check_name(name, NAME_PATTERN, "name")
        return self._pause(PauseScope.SCHEDULE, name, until)

    def resume_schedule(self, name: str) -> Pause | None:
        return self._resume(PauseScope.SCHEDULE, name)

    def pause_all(self, *, until: datetime | None = None) -> Pause:
        """Lease nothing from any queue until resumed, or until `until`; running tasks finish,
        submits and schedules go on. Queues paused on their own stay paused after resume_all."""
        return self._pause(PauseScope.ALL, "", until)

    def resume_all(self) -> Pause | None:
        return self._resume(PauseScope.ALL, "")

    def pauses(self) -> list[Pause]:
        """The pauses that hold now: all first, then queues and schedules by name."""
        with self.store.transaction(write=False) as tx:
            stored = tx.list_pauses()
        return holding(stored, self.clock.now())

    def end_pauses(self) -> int:
        """Remove the pauses whose `until` has come, and wake their queues' long-polls (a
        timer). Safe to run on several servers at once. Returns how many ended."""
        changes = Changes()
        with self.store.transaction() as tx:
            ended = tx.end_pauses(self.clock.now())
            if ended:
                _wake(tx, ended, changes)
        self.events.publish(changes)
        if ended:
            log.info(
                "pauses ended at their time",
                extra={"pauses": [f"{p.scope.value}:{p.name}" for p in ended]},
            )
        return len(ended)

    def _pause(self, scope: PauseScope, name: str, until: datetime | None) -> Pause:
        with self.store.transaction() as tx:
            now = self.clock.now()
            if until is not None and until.tzinfo is None:
                raise InvalidSpecError("give a time with its timezone (UTC: ...Z)", field="until")
            if until is not None and until <= now:
                raise InvalidSpecError(
                    f"{until.isoformat()} has passed; give a time in the future, or none to "
                    "pause until resumed",
                    field="until",
                )
            if scope is PauseScope.SCHEDULE and tx.get_schedule(name) is None:
                raise NotFoundError(f"no schedule {name!r}")
            pause = Pause(scope, name, now, until)
            tx.put_pause(pause)
        log.info(
            "paused",
            extra={"scope": scope.value, "name": name, "until": until and until.isoformat()},
        )
        return pause

    def _resume(self, scope: PauseScope, name: str) -> Pause | None:
        changes = Changes()
        with self.store.transaction() as tx:
            ended = tx.delete_pause(scope, name)
            if ended is not None:
                _wake(tx, [ended], changes)
        self.events.publish(changes)
        if ended is not None:
            log.info("resumed", extra={"scope": scope.value, "name": name})
        return ended


def _wake(tx: StoreTx, ended: Sequence[Pause], changes: Changes) -> None:
    """Wake as many long-polls of each freed queue as it has queued tasks: they were ready all
    along, but no lease could take them."""
    everything = any(p.scope is PauseScope.ALL for p in ended)
    freed = {p.name for p in ended if p.scope is PauseScope.QUEUE}
    if not everything and not freed:
        return  # a schedule: the timer fires it at its next pass
    for row in tx.count_tasks():
        if row.state is TaskState.QUEUED and (everything or row.queue in freed):
            changes.ready[row.queue] = changes.ready.get(row.queue, 0) + row.count


def _check_name(name: str, pattern: str, field: str) -> None:
    if not re.fullmatch(pattern, name):
        raise InvalidSpecError(f"{name!r} does not match {pattern}", field=field)
