"""What the worker's threads share: the leases it holds, its slots, its resources, its outbox.

A lease is *held* from the moment a lease call hands it over until the server has answered its
report (or the lease is known to be void). While its execution runs it also occupies a slot
and its resources. Everything here sits under one lock: the threads touch it a few times per
task, far too rarely to contend. Each waiting thread has a condition of its own on that lock,
notified only when what it waits for may have come: a task that ends wakes the leaser only
once there is room worth a lease call, not at every end (each needless wake-up is a thread
switch and a fight for the GIL, per task).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence

from conveyor.api.schemas import AssignmentOut, ReportIn
from conveyor.core.types import TaskId, Token
from conveyor.executor.resources import ResourceLedger

Lease = tuple[TaskId, Token]

START_MARGIN_S = 0.5
"""A prefetched task is handed back instead of started once its lease has less than this (or a
quarter of the lease time, if less) left: it must be running well before the lease ends, or
the server may give the task to another worker while the child process is still starting."""


def start_by(granted_after: float, lease_s: float) -> float:
    """The last moment (time.monotonic()) to start a task whose lease the server granted, or
    extended, for `lease_s` at some moment after `granted_after`. The server's clock is not
    needed: its lease runs at least `lease_s` from any moment before the grant."""
    return granted_after + lease_s - min(START_MARGIN_S, lease_s / 4)


AUTO_PREFETCH_MAX = 32
"""The most tasks an automatic prefetch leases beyond the slots (very short tasks)."""
PREFETCH_WINDOW_S = 0.02
"""An automatic prefetch holds about this much work beyond the slots: a few lease round trips'
worth, so that the slots never wait on the network and one lease call carries many short tasks,
while long tasks (whose prefetch would only keep them from idle workers) get one at most."""
PREFETCH_HOLD_S = 1.0
"""The default longest a prefetched task waits for a slot while every slot stays busy. Past it the
worker hands the task back unstarted (it goes back to the queue without spending a retry, and
an idle worker, one that joined later say, runs it now) and prefetches nothing more until a
task ends within this time again: its tasks have turned long, and a prefetch would only strand
the next one too. Prefetch pays for tasks of milliseconds, which never wait this long."""


class Bookkeeping:
    def __init__(
        self,
        capacity: int,
        advertised: dict[str, float],
        *,
        slots: int | None = None,
        auto_prefetch: bool = False,
        hold_s: float = PREFETCH_HOLD_S,
    ) -> None:
        self.slots = capacity if slots is None else slots
        self.hold_s = hold_s
        """How long a prefetched task may wait behind busy slots (PREFETCH_HOLD_S)."""
        self._fixed_capacity = capacity
        self._auto = auto_prefetch
        self._task_s: float | None = None
        """Mean execution time of recent tasks (moving average); None before the first ends."""
        self._prefetch_off = False
        """A prefetched task waited too long for a slot (prefetch_stranded): lease only what
        the slots start at once, until a task ends within `hold_s`."""
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        """Settlement and flushing (wait_for_settlement, wait_flushed)."""
        self._room = threading.Condition(lock)
        """The leaser's: room for a lease call, or leasing stopped."""
        self._outbox_ready = threading.Condition(lock)
        """The reporter's: reports to send, or closed."""
        self._held: set[Lease] = set()
        self._start_by: dict[Lease, float] = {}
        """Leases not yet ended: the last moment to start each (see start_by())."""
        self._resources = ResourceLedger(advertised)
        self._unfinished: dict[Lease, str] = {}
        """Leases whose execution has not ended (waiting to start, or running), each with the
        worker id it was leased under. Their number is what occupies the capacity."""
        self._void: set[Lease] = set()
        """Leases the server no longer counts as ours (stopped, superseded by a newer lease of
        the same task, or held under an identity it forgot): their executions are killed or
        never started, and no result is sent."""
        self._forgotten: set[str] = set()
        """Worker ids the server forgot: a lease still arriving under one is void at once."""
        self._outbox: list[ReportIn] = []
        self._in_flight = 0
        """Reports the reporter has taken and the server has not answered yet."""
        self._settled = 0
        self._leasing = True
        self._closed = False

    # ---- leasing (the leaser thread) -------------------------------------------------------------

    @property
    def leasing(self) -> bool:
        return self._leasing

    @property
    def capacity(self) -> int:
        """Leases whose execution has not ended that the worker takes on: slots plus prefetch."""
        if self._prefetch_off:
            return self.slots
        if not self._auto:
            return self._fixed_capacity
        if self._task_s is None:
            return self.slots + 1
        wanted = math.ceil(self.slots * PREFETCH_WINDOW_S / max(self._task_s, 1e-4))
        return self.slots + max(1, min(AUTO_PREFETCH_MAX, wanted))

    @property
    def refill(self) -> int:
        """With tasks prefetched, wait until this many fit before leasing again: one call then
        carries several tasks, instead of one call per task that ends."""
        return max(1, (self.capacity - self.slots + 1) // 2)

    def full(self) -> bool:
        """No room left: the leases not ended fill the capacity (which may have shrunk since a
        lease call asked for its room: tasks turned long, and prefetching stopped)."""
        with self._cond:
            return len(self._unfinished) >= self.capacity

    def wait_for_room(self) -> int:
        """Block until leasing is worth a call; return how many leases fit. 0 means leasing
        has stopped."""
        with self._cond:
            while self._leasing and not self._wants_more():
                self._room.wait()
            return self.capacity - len(self._unfinished) if self._leasing else 0

    def _wants_more(self) -> bool:
        busy = len(self._unfinished)
        room = self.capacity - busy
        # No prefetched task waits: a slot is free, or will be the moment a task ends.
        starving = busy <= self.slots
        return room > 0 and (starving or room >= self.refill)

    def leased(
        self, assignments: Sequence[AssignmentOut], *, start_by: float, worker_id: str
    ) -> list[Lease]:
        """Take over the leases a lease call under `worker_id` returned. Returns the leases
        whose executions must be stopped now: older leases of the same tasks (a task is leased
        again only once its previous lease is over) and, if the server has forgotten
        `worker_id` meanwhile, the new ones themselves."""
        with self._cond:
            stop: list[Lease] = []
            for a in assignments:
                lease = (a.task_id, a.token)
                stop += [
                    old
                    for old in self._unfinished
                    if old[0] == a.task_id and old[1] < a.token and old not in self._void
                ]
                self._held.add(lease)
                self._start_by[lease] = start_by
                self._unfinished[lease] = worker_id
                self._resources.hold(lease, a.resources)
                if worker_id in self._forgotten:
                    stop.append(lease)
            self._void.update(stop)
            return stop

    def free_resources(self) -> dict[str, float]:
        with self._cond:
            return self._resources.free()

    def idle(self) -> bool:
        """Nothing leased, running, or waiting for its report to be answered."""
        with self._cond:
            return not self._held

    def settled_count(self) -> int:
        with self._cond:
            return self._settled

    def wait_for_settlement(self, since: int) -> None:
        """Block until a report is answered after `since` (see settled_count), or leasing stops."""
        with self._cond:
            while self._leasing and self._settled == since:
                self._cond.wait()

    def stop_leasing(self) -> None:
        with self._cond:
            self._leasing = False
            self._cond.notify_all()
            self._room.notify_all()

    # ---- executions (the main thread) ------------------------------------------------------------

    def finished(
        self, task_id: TaskId, token: Token, report: ReportIn | None, *, ran_s: float | None = None
    ) -> None:
        """An execution ended (or was never started): free its slot, queue its report.

        `report=None` drops the lease without a word to the server: it is void already.
        `ran_s`, how long it ran, tunes an automatic prefetch.
        """
        lease = (task_id, token)
        with self._cond:
            if ran_s is not None:
                last = self._task_s
                self._task_s = ran_s if last is None else 0.8 * last + 0.2 * ran_s
                if ran_s < self.hold_s:
                    self._prefetch_off = False
            self._unfinished.pop(lease, None)
            self._start_by.pop(lease, None)
            self._resources.release(lease)
            if report is None:
                self._held.discard(lease)
                self._void.discard(lease)
                self._settled += 1
                self._cond.notify_all()
            else:
                self._outbox.append(report)
                self._outbox_ready.notify()
            if self._wants_more():
                self._room.notify()

    def prefetch_stranded(self) -> None:
        """A prefetched task waited `hold_s` behind busy slots and is being handed back:
        prefetch nothing more until a task ends within that time."""
        with self._cond:
            self._prefetch_off = True

    def is_void(self, task_id: TaskId, token: Token) -> bool:
        with self._cond:
            return (task_id, token) in self._void

    def lapsed(self, task_id: TaskId, token: Token) -> bool:
        """Too late to start: the lease may be over, with no heartbeat known to have extended it
        (the server was unreachable), and the task may be another worker's by now."""
        with self._cond:
            return time.monotonic() > self._start_by.get((task_id, token), math.inf)

    # ---- heartbeats ------------------------------------------------------------------------------

    def held_leases(self) -> list[Lease]:
        """The leases to extend: held and not void (the server has disowned those already).
        At most one per task, since a newer lease of a task voids the older ones."""
        with self._cond:
            return sorted(self._held - self._void)

    def extended(self, leases: Iterable[Lease], *, start_by: float) -> None:
        """A heartbeat extended these leases: they may start until `start_by` now."""
        with self._cond:
            for lease in leases:
                if lease in self._start_by:
                    self._start_by[lease] = max(self._start_by[lease], start_by)

    def void(self, leases: Iterable[Lease]) -> list[Lease]:
        """The server no longer counts these leases as ours; return those still to be stopped.

        A lease whose execution has finished already is left alone: its report is on its way,
        and the server will answer it (refused, or accepted if the heartbeat merely crossed it).
        One already void is not returned again: its execution is being stopped.
        """
        with self._cond:
            stopped = [
                lease for lease in leases if lease in self._unfinished and lease not in self._void
            ]
            self._void.update(stopped)
            return stopped

    def forget(self, worker_id: str) -> list[Lease]:
        """The server forgot the registration `worker_id` (deregistered, or declared dead): it
        has put each of its tasks back in the queue, or will once the lease is over. Void every
        lease held under it, now and as it arrives; return those whose executions must stop."""
        with self._cond:
            self._forgotten.add(worker_id)
            stopped = [
                lease
                for lease, leased_by in self._unfinished.items()
                if leased_by == worker_id and lease not in self._void
            ]
            self._void.update(stopped)
            return stopped

    # ---- reports (the reporter thread) -----------------------------------------------------------

    def take_reports(self, limit: int) -> list[ReportIn]:
        """Block until there are reports; take up to `limit`. Empty once closed."""
        with self._cond:
            while not self._outbox and not self._closed:
                self._outbox_ready.wait()
            if self._closed:
                return []
            batch, self._outbox = self._outbox[:limit], self._outbox[limit:]
            self._in_flight += len(batch)
            return batch

    def settled(self, reports: Sequence[ReportIn]) -> None:
        """The server answered these reports, accepted or not: the leases are no longer held."""
        with self._cond:
            self._in_flight -= len(reports)
            for r in reports:
                self._held.discard((r.task_id, r.token))
            self._settled += 1
            self._cond.notify_all()

    def unsent(self, reports: Sequence[ReportIn]) -> None:
        """These reports did not reach the server: send them first next time."""
        with self._cond:
            self._in_flight -= len(reports)
            self._outbox[:0] = reports
            self._cond.notify_all()
            self._outbox_ready.notify()

    def replace(self, sent: ReportIn, replacement: ReportIn) -> None:
        """The server refused `sent` as malformed: send `replacement` (same lease) instead."""
        with self._cond:
            self._in_flight -= 1
            self._outbox.insert(0, replacement)
            self._cond.notify_all()
            self._outbox_ready.notify()

    def unreported(self) -> int:
        with self._cond:
            return len(self._outbox) + self._in_flight

    def wait_flushed(self, timeout_s: float) -> bool:
        """Block until every queued report has been answered, or `timeout_s` passes."""
        give_up_at = time.monotonic() + timeout_s
        with self._cond:
            while self._outbox or self._in_flight:
                left_s = give_up_at - time.monotonic()
                if left_s <= 0:
                    return False
                self._cond.wait(left_s)
            return True

    def close(self) -> None:
        """Stop the reporter: take_reports() returns nothing from now on."""
        with self._cond:
            self._closed = True
            self._leasing = False
            for condition in (self._cond, self._room, self._outbox_ready):
                condition.notify_all()
