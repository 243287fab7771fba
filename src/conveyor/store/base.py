"""The Store interface: durable state behind one transaction API, two implementations.

A store knows SQL and nothing about rules. The engine opens a transaction, reads records (locking
them with `for_update=True`), decides with the pure core, and writes the new records back. Every
primitive takes and returns batches so that one lease or report of N tasks costs a few statements,
not N. Candidate queries lock with SKIP LOCKED semantics where the database has them, so several
servers can lease concurrently without waiting on each other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.capabilities import Capabilities
from conveyor.core.limiting import Limit
from conveyor.core.models import Attempt, Task, Worker
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.schedules import Schedule
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.core.types import TaskId, WorkerId


class Durability(StrEnum):
    """What an acknowledged write survives. Every setting survives the crash of any process
    (server, worker, kill -9 included) and a lost database connection.

    - `normal`: SQLite writes its log without waiting for the disk (synchronous=NORMAL); a crash
      of the operating system or a power loss may lose the last commits before a checkpoint.
    - `full`: SQLite waits for the disk at every commit (synchronous=FULL): those survive too.

    PostgreSQL commits durably under both (synchronous_commit=on): its `off` would lose recent
    commits in a crash of the database server, which `normal` promises to survive.
    """

    NORMAL = "normal"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended; written onto the attempt row (task_id, number)."""

    task_id: TaskId
    number: int
    finished_at: datetime
    outcome: Outcome
    error: str | None = None
    traceback: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass(frozen=True, slots=True)
class TaskFilter:
    states: Collection[TaskState] = ()
    queue: str | None = None
    name: str | None = None
    handler: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs a task's labels must all hold."""
    reason: Reason | None = None
    error: str | None = None
    """The task's error message, exactly; a task without one has the empty message."""
    ids: tuple[TaskId, ...] = ()
    created_after: datetime | None = None
    """Created at or after this time; `created_before` (and the `finished_` pair) exclude it."""
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None


@dataclass(slots=True)
class BulkRecord:
    """A bulk action and its progress, as the store keeps it (`conveyor.engine.bulk`).

    The action walks the tasks in submission order, `chunk_size` at a time, each chunk in its own
    transaction that also moves `cursor` and the counts: whatever crashes, the record says
    exactly which tasks were dealt with, and the next chunk starts after them."""

    id: str
    action: BulkAction
    where: TaskFilter
    chunk_size: int
    upto_seq: int
    """The newest task when the action was asked: tasks submitted later are never touched."""
    total: int
    """Tasks that matched the filter when the action was asked."""
    estimate: int
    """Of those, the ones in a state the action may change then."""
    created_at: datetime
    updated_at: datetime
    key: str | None = None
    state: BulkState = BulkState.RUNNING
    cursor: int = 0
    """Every task up to this seq has been dealt with."""
    matched: int = 0
    changed: int = 0
    skipped: int = 0
    chunks: int = 0
    finished_at: datetime | None = None
    runner: str | None = None
    """The server running its chunks, while `runner_until` has not passed."""
    runner_until: datetime | None = None
    error: str | None = None
    """Why its last chunk failed, if it did (it is tried again)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """What the dashboard's failure groups count of one failed or timed-out task."""

    seq: int
    reason: Reason | None
    error: str | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunnableBy:
    """What a worker runs, for a candidate query to leave out the tasks it cannot
    (store/placement_sql.py): their handler is not one it runs, or they require a label it
    lacks. `capabilities=None` (it did not say): any handler."""

    capabilities: Capabilities | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WaitingShape:
    """Waiting (pending or queued) tasks alike in what a worker needs to take them."""

    queue: str
    handler: str
    resources: dict[str, float]
    require: dict[str, str]
    count: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A start of a task with one limit key (a row of limit_holds). It holds a slot while its
    task is running the attempt it started (`token`): whatever ends that attempt frees it."""

    key: str
    task_id: TaskId
    token: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StateCount:
    state: TaskState
    queue: str
    count: int


@dataclass(frozen=True, slots=True)
class LeaseReads:
    """The reads every lease begins with, in its order (engine/submitting_ops.py): the worker's
    row, locked; the pending tasks that are due (`due_limit` at most); the pauses; and the
    limits' due wakes (of `wake_keys` keys at most), all as at `now`."""

    worker_id: WorkerId
    now: datetime
    due_limit: int
    wake_keys: int


@dataclass(frozen=True, slots=True)
class ReportReads:
    """The reads every report begins with: the reported tasks, locked, and the tasks that
    depend on them (which an ending releases or fails)."""

    task_ids: list[TaskId]


class StoreTx(Protocol):
    """Operations inside one transaction. Nothing is visible to others until it commits."""

    # tasks
    def insert_tasks(self, tasks: Sequence[Task]) -> None:
        """Insert new tasks; sets each task's `seq` (submission order)."""
        ...

    def insert_dependencies(self, edges: Sequence[tuple[TaskId, TaskId]]) -> None:
        """Record (task, dependency) edges."""
        ...

    def get_tasks(
        self, ids: Collection[TaskId], *, for_update: bool = False
    ) -> dict[TaskId, Task]: ...

    def find_by_keys(self, keys: Collection[str]) -> dict[str, Task]:
        """Tasks by idempotency key."""
        ...

    def update_tasks(self, tasks: Sequence[Task]) -> None:
        """Write back every mutable field of tasks loaded with for_update=True."""
        ...

    def delete_tasks(self, ids: Collection[TaskId]) -> None:
        """Remove tasks with their attempts and dependency edges."""
        ...

    def dependents(self, ids: Collection[TaskId]) -> dict[TaskId, list[TaskId]]:
        """For each id, the tasks that depend on it (only ids that have some)."""
        ...

    def due_pending(self, now: datetime, limit: int) -> list[Task]:
        """Locked pending tasks with no dependencies left whose start time has come."""
        ...

    def queued_candidates(
        self,
        queue: str,
        limit: int,
        *,
        after: tuple[int, int] | None = None,
        runnable: RunnableBy | None = None,
    ) -> list[Task]:
        """Locked queued tasks of `queue` in lease order (priority desc, seq), skipping locked rows;
        with `after=(priority, seq)`, only those that come after that position; with
        `runnable`, only those that worker can run (core.capabilities.runs)."""
        ...

    def read_ahead(self, reads: LeaseReads | ReportReads) -> None:
        """Make `reads` now, at once, and answer the first call of each from what was read, in
        this transaction: for a lease get_worker(worker_id, for_update=True), due_pending(now,
        due_limit), pauses_for_lease() and lease_wakes(now, wake_keys); for a report
        get_tasks(task_ids, for_update=True) and dependents(task_ids). On PostgreSQL that is
        one round trip instead of four (two); a store whose reads cost no round trip does
        nothing."""
        ...

    def may_lease(self, queues: Sequence[str], now: datetime) -> bool:
        """False when a lease from `queues` at `now` would surely find nothing: no task of them
        is ready, no pending task is due and no limit's wake is. It takes no lock, so True may
        still lease nothing (another lease took the task, or it does not fit the worker)."""
        ...

    def running_counts(self) -> dict[WorkerId, int]:
        """How many running tasks each worker holds a lease on (workers with none left out)."""
        ...

    def queued_ahead(self, queue: str, priority: int, seq: int, cap: int) -> int:
        """How many queued tasks of `queue` come before (priority, seq) in lease order, counting
        no further than `cap`."""
        ...

    def waiting_shapes(self) -> list[WaitingShape]:
        """Pending and queued tasks grouped by queue, handler, resources and required labels."""
        ...

    def expired_leases(self, now: datetime, limit: int) -> list[Task]:
        """Locked running tasks whose lease expired before `now`."""
        ...

    def running_on_worker(self, worker_id: WorkerId) -> list[Task]:
        """Locked running tasks leased to `worker_id`."""
        ...

    def next_due(self) -> datetime | None:
        """The earliest start time among pending tasks with no dependencies left."""
        ...

    def finished_before(self, cutoff: datetime, limit: int) -> list[Task]:
        """Locked tasks that finished before `cutoff`, oldest first (for retention)."""
        ...

    # attempts
    def insert_attempts(self, attempts: Sequence[Attempt]) -> None: ...

    def finish_attempts(self, ends: Sequence[AttemptEnd]) -> None: ...

    def extend_attempt_leases(
        self, attempts: Sequence[tuple[TaskId, int]], lease_expires_at: datetime
    ) -> None:
        """Record a heartbeat's new lease expiry on these (task_id, number) attempt rows."""
        ...

    def get_attempts(self, task_id: TaskId) -> list[Attempt]: ...

    # workers
    def insert_worker(self, worker: Worker) -> None: ...

    def get_worker(self, worker_id: WorkerId, *, for_update: bool = False) -> Worker | None: ...

    def update_worker(self, worker: Worker) -> None: ...

    def list_workers(self) -> list[Worker]: ...

    def stale_workers(self, seen_before: datetime, limit: int) -> list[Worker]:
        """Locked workers alive or draining whose last heartbeat is older than `seen_before`."""
        ...

    def delete_workers_gone_before(self, cutoff: datetime) -> int:
        """Forget dead and deregistered workers last seen before `cutoff`; returns how many."""
        ...

    # outages
    def timers_ran(self, now: datetime) -> datetime | None:
        """Record that the timers ran at `now`; returns when they last ran before (None: never).

        Locks the record until the transaction ends, so that servers take turns."""
        ...

    def shift_leases_and_silence(self, by: timedelta) -> None:
        """Move the lease expiry of every running task (and of its open attempt) and the last
        sighting of every live worker `by` later."""
        ...

    # secrets the servers of one database share
    def shared_secret(self, name: str, new: bytes) -> bytes:
        """The secret stored under `name`; `new` is stored, and returned, if there is none yet
        (the first of several servers to ask decides, the others read it)."""
        ...

    # schedules
    def put_schedule(self, schedule: Schedule) -> None:
        """Insert or replace a schedule by name."""
        ...

    def get_schedule(self, name: str, *, for_update: bool = False) -> Schedule | None: ...

    def list_schedules(self) -> list[Schedule]: ...

    def delete_schedule(self, name: str) -> bool: ...

    def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """Locked schedules whose next firing is at or before `now`, skipping locked rows."""
        ...

    # pauses
    def put_pause(self, pause: Pause) -> None:
        """Store a pause, replacing the one of the same scope and name. It holds for every lease
        that begins once this transaction has committed; leases already in progress finish
        first (PostgreSQL: a lock that leases share and a pause takes alone)."""
        ...

    def delete_pause(self, scope: PauseScope, name: str) -> Pause | None:
        """Remove the pause of that scope and name; returns it (None: there was none)."""
        ...

    def list_pauses(self) -> list[Pause]:
        """Every stored pause, including those whose `until` has passed but which end_pauses()
        has not removed yet."""
        ...

    def pauses_for_lease(self) -> list[Pause]:
        """list_pauses(), read by a lease so that it cannot cross a pause being stored: the
        pause waits for the lease's transaction to end, or the lease reads it."""
        ...

    def end_pauses(self, now: datetime) -> list[Pause]:
        """Remove the pauses whose `until` is at or before `now`; returns them."""
        ...

    # limits (conveyor.engine.limits says how a lease uses them)
    def put_limit(self, limit: Limit, now: datetime) -> None:
        """Insert or replace a limit by name."""
        ...

    def get_limits(self, names: Collection[str]) -> dict[str, Limit]:
        """The limits of these names that exist."""
        ...

    def list_limits(self) -> list[Limit]:
        """Every limit, by name."""
        ...

    def delete_limit(self, name: str) -> bool: ...

    def limits_for_lease(self, keys: Collection[str]) -> tuple[dict[str, Limit], set[str]]:
        """The limits of these keys, by name, and those of the keys that have a limit locked
        until the transaction ends, without waiting: a key another transaction holds is left
        out (PostgreSQL: another server is leasing with it). SQLite's one writer needs no
        locks: every such key. In one round trip."""
        ...

    def lease_wakes(
        self, now: datetime, keys: int
    ) -> tuple[list[tuple[int, str]], dict[str, Limit], set[str]]:
        """due_limit_wakes() and limits_for_lease() of their keys, in one round trip."""
        ...

    def limit_usage(self, since: Mapping[str, datetime]) -> dict[str, tuple[int, int]]:
        """For each key: its holds that hold a slot now (their task runs the attempt that took
        it), and its starts after the key's `since` (its rate's window). Counted in the
        database."""
        ...

    def nth_limit_start(self, key: str, since: datetime, offset: int) -> datetime | None:
        """The key's start that is `offset` (0: the first) in time order among those after
        `since`."""
        ...

    def take_limit_slots(
        self, holds: Sequence[Hold], starts: Sequence[tuple[str, datetime]]
    ) -> None:
        """Record a lease's holds, and the (key, time) starts of its keys that have a rate."""
        ...

    def delete_limit_holds(self, holds: Sequence[tuple[str, TaskId, int]]) -> None:
        """Remove these (key, task id, token) holds, whose attempts ended. Only tidying: a hold
        whose attempt ended holds no slot anyway."""
        ...

    def sweep_limit_holds(self, now: datetime, limit: int) -> int:
        """Remove up to `limit` holds that hold no slot any more, and up to `limit` starts that
        no rate counts any more (older than their limit's window, or their limit has no rate
        or is gone); returns how many rows went."""
        ...

    def hold_tasks(self, held: Sequence[tuple[TaskId, str]]) -> None:
        """Move queued tasks (task id, key) out of the ready index into the key's line."""
        ...

    def ready_limited(
        self, name: str, after_seq: int, limit: int
    ) -> list[tuple[int, TaskId, str, list[str]]]:
        """(seq, id, queue, limit keys) of locked ready tasks (not held) that may take limit
        `name` (the caller checks their keys: this may give others too), in seq order after
        `after_seq`, skipping locked rows."""
        ...

    def held_candidates(self, key: str, queue: str, limit: int) -> list[Task]:
        """Locked queued tasks of `queue` held on `key`, in lease order, skipping locked rows."""
        ...

    def held_keys(self, after: str | None, limit: int) -> list[str]:
        """Distinct keys that queued tasks are held on, in order, after `after`."""
        ...

    def held_queues(self, key: str) -> list[str]:
        """The queues of the tasks held on `key`."""
        ...

    def held_counts(self) -> dict[str, int]:
        """Queued tasks held on each key (keys with none left out)."""
        ...

    def live_hold_counts(self) -> dict[str, int]:
        """Live holds of each key (keys with none left out)."""
        ...

    def held_ahead(self, key: str, priority: int, seq: int) -> int:
        """Queued tasks held on `key` that come before (priority, seq) in lease order."""
        ...

    def wake_limit_keys(self, keys: Collection[str], at: datetime) -> None:
        """Ask leases to look at the tasks held on these keys again from `at` on: a new wake
        for each key, whatever wakes it has already."""
        ...

    def ensure_limit_wake(self, key: str, at: datetime) -> None:
        """A wake for `key` at `at`, unless it has one that is due by then."""
        ...

    def due_limit_wakes(self, now: datetime, keys: int) -> list[tuple[int, str]]:
        """(id, key) of every wake due at `now` of the (up to) `keys` keys whose due wakes are
        the oldest, oldest first."""
        ...

    def delete_limit_wakes(self, ids: Collection[int]) -> None:
        """Remove the wakes a lease has dealt with (those asked since stay)."""
        ...

    def next_limit_wake(self, after: datetime) -> datetime | None:
        """The soonest wake later than `after`."""
        ...

    # reads for clients
    def count_tasks(self) -> list[StateCount]: ...

    def list_tasks(self, where: TaskFilter, after_seq: int | None, limit: int) -> list[Task]:
        """Tasks matching `where`, newest first, with seq < after_seq when given (a cursor)."""
        ...

    def count_by_state(self, where: TaskFilter) -> dict[TaskState, int]:
        """How many tasks match `where`, by state (states without any left out)."""
        ...

    def recent_failures(self, window: int) -> list[Failure]:
        """The newest `window` failed or timed-out tasks, newest first."""
        ...

    # bulk actions
    def last_seq(self) -> int:
        """The seq of the newest task (0: none yet)."""
        ...

    def bulk_candidates(
        self, where: TaskFilter, after_seq: int, upto_seq: int, limit: int
    ) -> list[tuple[int, TaskId]]:
        """(seq, id) of the first `limit` tasks matching `where` with after_seq < seq <= upto_seq,
        in seq order. Locks nothing: the chunk locks them with `lock_matching`."""
        ...

    def lock_matching(self, ids: Collection[TaskId], where: TaskFilter) -> list[Task]:
        """Those of `ids` that match `where` now, locked (in id order, as every lock of tasks)."""
        ...

    def insert_bulk(self, record: BulkRecord) -> None: ...

    def get_bulk(self, bulk_id: str, *, for_update: bool = False) -> BulkRecord | None: ...

    def find_bulk(self, key: str) -> BulkRecord | None:
        """The bulk action asked with this key, if any."""
        ...

    def update_bulk(self, record: BulkRecord) -> None: ...

    def unclaimed_bulks(self, now: datetime, limit: int) -> list[str]:
        """Ids of bulk actions still running whose runner's claim has lapsed (or that have none)."""
        ...


class Store(Protocol):
    """A durable home for tasks, attempts and workers."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[StoreTx]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Raises StoreBusyError when the database is locked or overloaded, StoreError otherwise.
        """
        ...

    def maintain(self) -> None:
        """Periodic housekeeping (compacting counters); safe to run on several servers at once."""
        ...

    def close(self) -> None: ...


def chunked(items: Sequence[object], size: int) -> Iterator[Sequence[object]]:
    """Split long id lists so that no statement exceeds the driver's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
