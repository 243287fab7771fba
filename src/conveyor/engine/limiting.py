"""Setting, reading and removing concurrency and rate limits, why a task waits on one, and the
timer that keeps their wakes and holds in order (conveyor.engine.limits says how leases use them).

Limits live in the database, so every server enforces the same ones from the moment they are
stored, and they survive restarts.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from conveyor.core.limiting import Limit, LimitUse, limit_name, room
from conveyor.core.types import TaskId
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.engine.limits import LimitWait, limit_waits, line_up, read_usage
from conveyor.errors import NotFoundError
from conveyor.store.base import StoreTx

log = logging.getLogger(__name__)

SWEEP_KEYS = 200
"""Keys with held tasks the timer looks at per pass, in turn: a wake missed for any reason is
made up for within a few passes."""
SWEEP_HOLDS = 5_000
"""Holds that count for nothing any more, removed per pass at most."""
LINE_UP_BATCH = 5_000
"""Ready tasks a change of limit looks at per transaction, when it lines up those it holds."""
NOTIFY_KEYS = 100
"""Keys whose queues' long-polls a change of limit wakes at once (the timers do the rest)."""


class Limiting(EngineCore):
    _limit_sweep_after: str | None = None
    """Where the timer's turn over the held keys resumes (this server's own; only a speed-up)."""

    def set_limit(self, limit: Limit) -> LimitUse:
        """Store a limit, or replace the one of that name: leases on every server keep to it
        from the moment it commits. Tasks held back on its keys are looked at again at once;
        tasks queued before it existed that take it move to its keys' lines (in chunks, each
        its own transaction), out of the ready index, where they would be in leases' way."""
        changes = Changes()
        with self.store.transaction() as tx:
            now = self.clock.now()
            tx.put_limit(limit, now)
            self._wake_held(tx, limit.name, changes)
        self._line_up(limit.name, changes)
        with self.store.transaction(write=False) as tx:
            use = _uses(tx, [limit])[0]
        self.events.publish(changes)
        log.info(
            "limit set",
            extra={"limit": limit.name, "concurrency": limit.concurrency, "rate": limit.rate},
        )
        return use

    def limits(self) -> list[LimitUse]:
        """Every limit by name, with what its keys take now."""
        with self.store.transaction(write=False) as tx:
            return _uses(tx, tx.list_limits())

    def limit(self, name: str) -> LimitUse:
        with self.store.transaction(write=False) as tx:
            found = tx.get_limits([name]).get(name)
            if found is None:
                raise NotFoundError(f"no limit {name!r}; `conveyor limits` lists them")
            return _uses(tx, [found])[0]

    def delete_limit(self, name: str) -> None:
        """Remove a limit: the tasks that take it are no longer held back by it (those held now
        are leased in turn, as leases reach them)."""
        changes = Changes()
        with self.store.transaction() as tx:
            if not tx.delete_limit(name):
                raise NotFoundError(f"no limit {name!r}; `conveyor limits` lists them")
            self._wake_held(tx, name, changes)
        self.events.publish(changes)
        log.info("limit removed", extra={"limit": name})

    def why_limited(self, task_id: TaskId) -> list[LimitWait]:
        """The limits that keep a queued task from starting now (full ones), with how many
        tasks are held ahead of it on each; empty if none does or it is not queued."""
        with self.store.transaction(write=False) as tx:
            task = tx.get_tasks([task_id]).get(task_id)
            if task is None:
                raise NotFoundError(f"no task {task_id}")
            return limit_waits(tx, task, self.clock.now())

    def wake_limits(self) -> int:
        """The limits' timer: wake the long-polls of the queues whose held tasks a due wake lets
        go; look at some held keys in turn and wake those with room (a wake that was missed);
        remove holds that count for nothing any more. Returns the keys woken. Safe to run on
        several servers at once."""
        changes = Changes()
        with self.store.transaction() as tx:
            now = self.clock.now()
            for key in {key for _, key in tx.due_limit_wakes(now, NOTIFY_KEYS)}:
                for queue in tx.held_queues(key):
                    changes.made_ready(queue)
            keys = tx.held_keys(self._limit_sweep_after, SWEEP_KEYS)
            self._limit_sweep_after = keys[-1] if len(keys) == SWEEP_KEYS else None
            limits = tx.get_limits({limit_name(key) for key in keys})
            limited = [key for key in keys if limit_name(key) in limits]
            usage = read_usage(tx, limits, limited, now)
            woken = [
                key
                for key in keys
                if key not in usage or room(limits[limit_name(key)], usage[key]) > 0
            ]
            tx.wake_limit_keys(woken, now)
            for key in woken:
                for queue in tx.held_queues(key):
                    changes.made_ready(queue)
            swept = tx.sweep_limit_holds(now, SWEEP_HOLDS)
        if woken:
            log.info("woke held limit keys", extra={"keys": len(woken)})
        if swept:
            log.debug("removed spent limit holds", extra={"holds": swept})
        self.events.publish(changes)
        return len(woken)

    def _line_up(self, name: str, changes: Changes) -> None:
        """Move the ready tasks that take limit `name` to their keys' lines."""
        after = 0
        while True:
            with self.store.transaction() as tx:
                ready = tx.ready_limited(name, after, LINE_UP_BATCH)
                mine = {
                    task_id: (queue, keys)
                    for _, task_id, queue, keys in ready
                    if any(limit_name(key) == name for key in keys)
                }
                lines = line_up(tx, {i: keys for i, (_, keys) in mine.items()}, self.clock.now())
                tx.hold_tasks(list(lines.items()))
            for queue in {mine[task_id][0] for task_id in lines}:
                changes.made_ready(queue)  # their keys may have room: a lease should look
            if len(ready) < LINE_UP_BATCH:
                return
            after = ready[-1][0]

    def _wake_held(self, tx: StoreTx, name: str, changes: Changes) -> None:
        """Wake every key of limit `name` that tasks are held on."""
        keys: list[str] = []
        after: str | None = None
        while True:
            found = tx.held_keys(after, 1000)
            keys.extend(key for key in found if limit_name(key) == name)
            if len(found) < 1000:
                break
            after = found[-1]
        tx.wake_limit_keys(keys, self.clock.now())
        for key in keys[:NOTIFY_KEYS]:
            for queue in tx.held_queues(key):
                changes.made_ready(queue)


def _uses(tx: StoreTx, limits: list[Limit]) -> list[LimitUse]:
    running: dict[str, int] = defaultdict(int)
    held: dict[str, int] = defaultdict(int)
    for key, count in tx.live_hold_counts().items():
        running[limit_name(key)] += count
    for key, count in tx.held_counts().items():
        held[limit_name(key)] += count
    return [LimitUse(limit, running[limit.name], held[limit.name]) for limit in limits]
