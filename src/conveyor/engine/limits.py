"""Concurrency and rate limits on the lease path: what a lease takes, what it holds back, and what
ending an attempt frees (conveyor.core.limiting says what a limit is).

- **Slots.** A lease writes a hold (key, task, attempt, time) for each key of each task it
  grants, in its own transaction. A key's use is the number of its holds whose task is still
  running that attempt: reporting, cancelling, a lease running out, a dead or deregistered
  worker, anything that ends the attempt frees the slot by that alone, so no slot can leak and
  none needs giving back. The rows are also the starts that a rate counts; they go once their
  window is over (Limiting.wake_limits sweeps them, and each lease those of the keys it reads).
- **Held tasks.** A task a lease finds with a full key stays `queued` but leaves the ready
  index for the key's own line (tasks.held_on, in lease order): no later lease reads past it,
  so 100,000 tasks of one full key cost nothing to the tasks behind them.
- **Wakes.** Ending an attempt with a limit adds a wake for each of its keys; so do changing
  or removing a limit, and a rate's window moving on (due at that time). A lease reads the due
  wakes, takes what the keys' room allows from their lines, merged in lease order with the
  ready tasks, and removes the wakes it dealt with. Wakes are rows added and removed, never
  updated, so a wake added while a lease is deciding survives it: a slot freed at that moment
  is found by the next lease.
- **Several servers.** A lease locks each key before it counts the key's holds, and passes a
  key that another transaction has locked over (StoreTx.limits_for_lease), so two servers never
  give the same slot away.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.core.limiting import (
    Admission,
    Full,
    Limit,
    Usage,
    full,
    limit_name,
    room,
    starts_to_leave,
)
from conveyor.core.models import Task
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId
from conveyor.engine.events import Changes
from conveyor.store.base import Hold, StoreTx

WAKE_BATCH = 32
"""Due wakes a lease reads, at most: bounds what one lease spends on held lines."""
SPARE_WAKES = 8
"""Wakes a key still with room may keep before a lease clears all but one of them."""
RETRY_WAKE_S = 1.0
"""When a woken key still has room but no line this lease reads has tasks left, its wake comes
back this much later (for the leases of the other queues), not at once for every lease."""


class LeaseLimits:
    """One lease's view of the limits its candidates take (one per lease transaction)."""

    def __init__(self, tx: StoreTx, now: datetime) -> None:
        self._tx = tx
        self._now = now
        self._limits: dict[str, Limit] = {}
        self._seen: set[str] = set()
        self._usage: dict[str, Usage] = {}
        self._rooms: dict[str, int] = {}
        self._busy: set[str] = set()
        self._wakes: dict[str, list[int]] = defaultdict(list)
        self._asked: dict[tuple[str, str], int] = {}
        self._read: dict[tuple[str, str], int] = {}
        self._candidates: dict[str, Task] = {}
        self._admission = Admission({})

    # ---- the held lines a lease reads -------------------------------------------------------

    def woken(self) -> list[tuple[str, int]]:
        """Keys with a due wake whose lines this lease may take from, each with its room."""
        wakes, limits, locked = self._tx.lease_wakes(self._now, WAKE_BATCH)
        for wake_id, key in wakes:
            self._wakes[key].append(wake_id)
        self._absorb(set(self._wakes), limits, locked)
        return [(key, self._room(key)) for key in self._wakes if key not in self._busy]

    def held_lines(self, queues: Sequence[str], page: int) -> list[list[Task]]:
        """The tasks a lease may take from the lines of the keys woken since the last lease:
        as many of each line of `queues` as the key has room for (at most `page`), each in
        lease order (locked)."""
        lines = []
        for key, free in self.woken():
            if free <= 0:
                continue
            for queue in queues:
                line = self._tx.held_candidates(key, queue, min(page, free))
                self._asked[key, queue] = min(page, free)
                self._read[key, queue] = len(line)
                lines.append(line)
        return lines

    # ---- admitting candidates ---------------------------------------------------------------

    def admitter(self, candidates: Iterable[Task]) -> Callable[[Task], bool]:
        """A fresh admission for one pass over `candidates` in lease order: call it on each task
        that fits the worker; it says whether the task's keys let it start, and takes their
        slots if so."""
        tasks = [task for task in candidates if task.limits]
        self._candidates.update((task.id, task) for task in tasks)
        self._load({key for task in tasks for key in task.limits})
        self._admission = Admission(dict(self._rooms), self._busy)
        admission = self._admission
        return lambda task: admission.admit(task.id, task.limits)

    # ---- after the choice -------------------------------------------------------------------

    def settle(self, chosen: Sequence[Task], started_at: datetime) -> None:
        """Write what the lease decided, once the chosen tasks are running: their holds, the
        tasks held back, and what is left of the wakes it read.

        `started_at` is when the chosen attempts start, which a lease that takes a limit reads
        after the slots (leasing.grant_leases), later than the time the use was counted at: the
        starts are written at it, as the attempts record them. Counted from the earlier time, a
        window then holds every start its records hold, and the rate holds on the records too.
        """
        tx, now = self._tx, started_at
        taken: dict[str, int] = defaultdict(int)
        holds = []
        for task in chosen:
            for key in task.limits:
                holds.append(Hold(key, task.id, task.attempts, now))
                taken[key] += 1
        tx.take_limit_slots(holds, [(hold.key, now) for hold in holds if self._rated(hold.key)])
        held = [
            (task_id, key)
            for task_id, key in self._admission.held.items()
            if self._candidates[task_id].held_on != key
        ]
        tx.hold_tasks(held)
        for task_id, key in held:
            self._candidates[task_id].held_on = key
        self._settle_wakes(taken)
        for key in set(self._admission.held.values()) | set(self._wakes):
            reopen = self._reopens_at(key, taken[key], now)
            if reopen is not None:
                tx.ensure_limit_wake(key, reopen)  # the rate's window moves on then

    def _settle_wakes(self, taken: dict[str, int]) -> None:
        """What is left of the wakes this lease read. A key still with room whose line gave
        all this lease asked keeps its wakes (the next lease reads on); the wakes of a key that
        is full again, or whose lines ran dry, go (the next ending, or the rate's reopening,
        wakes it again); a key with room and tasks only in other queues' lines is woken again a
        little later, for their leases. A key another server is deciding keeps its wakes."""
        spent: list[int] = []
        for key in (key for key in self._wakes if key not in self._busy):
            wakes = self._wakes[key]
            if key in self._rooms and self._rooms[key] - taken[key] <= 0:
                spent += wakes
                continue
            lines = [pair for pair in self._asked if pair[0] == key]
            if any(self._read[pair] == self._asked[pair] for pair in lines):
                if len(wakes) > SPARE_WAKES:  # a few spare ones cost less than a statement
                    spent += sorted(wakes)[:-1]  # one is enough to keep it awake
                continue
            spent += wakes
            left = set(self._tx.held_queues(key))
            if left:
                read_here = {queue for _, queue in lines}
                later = timedelta(0) if left & read_here else timedelta(seconds=RETRY_WAKE_S)
                self._tx.wake_limit_keys([key], self._now + later)
        self._tx.delete_limit_wakes(spent)

    # ---- reading the keys -------------------------------------------------------------------

    def _load(self, keys: Collection[str]) -> None:
        """Limits, locks and use of the keys not looked at yet in this lease."""
        new = set(keys) - self._seen
        if new:
            self._absorb(new, *self._tx.limits_for_lease(new))

    def _absorb(self, keys: set[str], limits: dict[str, Limit], locked: set[str]) -> None:
        """Take in the limits and locks of `keys`, and read the use of those locked (only now:
        a count read before its key's lock could miss a slot another server just took)."""
        keys -= self._seen
        self._seen |= keys
        self._limits.update(limits)
        limited = {key for key in keys if limit_name(key) in self._limits}
        self._busy |= limited - locked
        mine = limited & locked
        if not mine:
            return
        usage = read_usage(self._tx, self._limits, mine, self._now)
        for key in mine:
            self._usage[key] = usage[key]
            self._rooms[key] = room(self._limits[limit_name(key)], usage[key])

    def _rated(self, key: str) -> bool:
        limit = self._limits.get(limit_name(key))
        return limit is not None and limit.rate is not None

    def _room(self, key: str) -> int:
        return self._rooms.get(key, MAX_READ)

    def _reopens_at(self, key: str, taken: int, now: datetime) -> datetime | None:
        limit = self._limits.get(limit_name(key))
        if limit is None or key not in self._usage:
            return None
        return reopens_at(self._tx, key, limit, self._usage[key], now, taken=taken)


MAX_READ = 1_000_000
"""The room of a key without a limit (one that was removed while tasks were held on it)."""


def read_usage(
    tx: StoreTx, limits: dict[str, Limit], keys: Collection[str], now: datetime
) -> dict[str, Usage]:
    """Each key's use now: its holds that hold a slot, and its starts in its rate's window."""
    since = {key: now - limits[limit_name(key)].window for key in keys}
    counts = tx.limit_usage(since)
    return {key: Usage(*counts.get(key, (0, 0))) for key in keys}


def reopens_at(
    tx: StoreTx, key: str, limit: Limit, usage: Usage, now: datetime, *, taken: int = 0
) -> datetime | None:
    """When the rate of a key that it holds back (counting `taken` more starts now) lets one
    more task start: when enough of the window's starts have left it. None if it is not the
    rate that holds the key back."""
    after = Usage(usage.running + taken, usage.started + taken)
    if full(limit, after) is not Full.RATE:
        return None
    leave = starts_to_leave(limit, after)
    if leave is None:
        return None
    if leave > usage.started:  # the last to leave is one of the `taken` starts, made now
        return now + limit.window
    first = tx.nth_limit_start(key, now - limit.window, leave - 1)
    return None if first is None else first + limit.window


# ---- tasks entering the queue, attempts ending ---------------------------------------------


def hold_on_entry(tx: StoreTx, tasks: Iterable[Task], now: datetime) -> None:
    """Tasks that become ready and take a limit wait in a key's line from the start rather than
    in the ready index (`line_up`). A batch of 100,000 tasks of a full key is then never in
    any lease's way. Tasks whose limits are not set go to the ready index as any other."""
    entering = {
        t.id: t for t in tasks if t.limits and t.state is TaskState.QUEUED and not t.held_on
    }
    if entering:
        for task_id, key in line_up(tx, {i: t.limits for i, t in entering.items()}, now).items():
            entering[task_id].held_on = key


def line_up(
    tx: StoreTx, keys_of: Mapping[TaskId, Sequence[str]], now: datetime
) -> dict[TaskId, str]:
    """The line each of these tasks waits in: that of its key with the least room now (the one
    most likely to hold it back; the first of equals), among those whose limit is set; and wake
    those keys, so that a lease takes what their room allows. Tasks without any left out."""
    names = {limit_name(key) for keys in keys_of.values() for key in keys}
    limits = tx.get_limits(names)
    keys = {key for ks in keys_of.values() for key in ks if limit_name(key) in limits}
    if not keys:
        return {}
    usage = read_usage(tx, limits, keys, now)
    rooms = {key: room(limits[limit_name(key)], usage[key]) for key in keys}
    lines: dict[TaskId, str] = {}
    for task_id, task_keys in keys_of.items():
        mine = [key for key in task_keys if key in rooms]
        if mine:
            lines[task_id] = min(mine, key=rooms.__getitem__)
    tx.wake_limit_keys(set(lines.values()), now)
    return lines


def free_slots(tx: StoreTx, ended: Sequence[Task], now: datetime, changes: Changes) -> None:
    """Attempts of these tasks ended (any way): their slots are free already (a hold counts only
    while its attempt runs); wake the keys that have a limit, so that a lease takes the tasks
    held on them, and wake a long-poll of each task's queue to come and lease. The holds go
    now, so that a key's count reads its running tasks only (the timers sweep any left)."""
    keys = {key for task in ended for key in task.limits}
    if not keys:
        return
    tx.delete_limit_holds([(key, task.id, task.attempts) for task in ended for key in task.limits])
    limits = tx.get_limits({limit_name(key) for key in keys})
    woken = {key for key in keys if limit_name(key) in limits}
    if not woken:
        return
    tx.wake_limit_keys(woken, now)
    for task in ended:
        if task.state is not TaskState.QUEUED and woken.intersection(task.limits):
            changes.made_ready(task.queue)


# ---- why a task waits ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitWait:
    """One of a task's limits that is full now."""

    key: str
    limit: Limit
    full: Full
    running: int
    """Tasks running with this key."""
    started: int
    """Starts of this key in the rate's current window (0 without a rate)."""
    ahead: int
    """Tasks held on this key that come before this one (priority, then submission)."""
    until: datetime | None
    """When the rate lets one more task of the key start (rate only; None: when a running task
    of the key ends)."""


def limit_waits(tx: StoreTx, task: Task, now: datetime) -> list[LimitWait]:
    """The limits that keep a queued task from starting now, in the order the task names them;
    empty when none does (or the task is not queued)."""
    if task.state is not TaskState.QUEUED or not task.limits:
        return []
    limits = tx.get_limits({limit_name(key) for key in task.limits})
    keys = [key for key in task.limits if limit_name(key) in limits]
    usage = read_usage(tx, limits, keys, now)
    waits = []
    for key in keys:
        limit, use = limits[limit_name(key)], usage[key]
        why = full(limit, use)
        if why is None:
            continue
        waits.append(
            LimitWait(
                key=key,
                limit=limit,
                full=why,
                running=use.running,
                started=use.started,
                ahead=tx.held_ahead(key, task.priority, task.seq),
                until=reopens_at(tx, key, limit, use, now) if why is Full.RATE else None,
            )
        )
    return waits
