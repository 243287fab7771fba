"""The SQLite store: one file, WAL, one writer connection, readers on their own connections.

SQLite lets one writer in at a time, and several writer processes starve one another, so all
writes of a process go through one connection under a lock, each in BEGIN IMMEDIATE so that a
read-then-write transaction never fails half-way with "database is locked".

A transaction opened on a thread that is already inside a write transaction of this store is a
SAVEPOINT of it: it commits with the outer one, and only its own work is undone if it raises
(group commit runs many requests' operations in one transaction that way).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.core.models import Attempt, Task, Worker
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.schedules import Schedule
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId, WorkerId
from conveyor.errors import StoreBusyError, StoreError, StoreRefusedError
from conveyor.store import codec, placement_sql, sqlite_wal
from conveyor.store.base import (
    AttemptEnd,
    Durability,
    LeaseReads,
    ReportReads,
    RunnableBy,
    StateCount,
    TaskFilter,
    chunked,
)
from conveyor.store.placement_sql import SQLitePlacement, runnable_clause
from conveyor.store.sqlite_bulk import SQLiteBulk
from conveyor.store.sqlite_limits import SQLiteLimits
from conveyor.store.sqlite_schema import MIGRATIONS

log = logging.getLogger(__name__)

_SYNCHRONOUS = {Durability.NORMAL: "NORMAL", Durability.FULL: "FULL"}
_TASK_SELECT = f"SELECT {', '.join(codec.TASK_COLUMNS)} FROM tasks"
_PAUSES = ", ".join(codec.PAUSE_COLUMNS)
_MAX_PARAMS = 900  # below SQLite's historical 999-variable limit


class SQLiteStore:
    """A Store on one SQLite file (or ":memory:" for throwaway tests).

    `durability` (see Durability): `normal`, the default, survives any process crash, kill -9
    included; only an operating-system crash or power loss can lose the last commits. `full`
    survives those too, at several times the cost per commit.

    A file that was not closed cleanly and whose write-ahead log is missing or damaged would open
    without the commits in it: that is refused with StoreError saying what is lost (sqlite_wal.py),
    unless `accept_wal_loss` says to open it anyway.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = Durability.NORMAL,
        busy_timeout_s: float = 5.0,
        accept_wal_loss: bool = False,
    ) -> None:
        self.path = str(path)
        self.durability = Durability(durability)
        self._synchronous = _SYNCHRONOUS[self.durability]
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._write_lock = threading.RLock()
        self._readers = threading.local()
        self._current = threading.local()  # the write transaction open on this thread, if any
        self._reader_conns: list[sqlite3.Connection] = []
        self._closed = False
        # Transactions in progress: close() waits for them, since closing a connection another
        # thread is using can crash the sqlite3 module.
        self._active = 0
        self._idle = threading.Condition()
        if self.path != ":memory:":
            self._check_whole(accept_wal_loss)
        self._writer = self._connect()
        self._migrate()
        self._mark_closed_cleanly(False)

    def _check_whole(self, accept_wal_loss: bool) -> None:
        damage = sqlite_wal.inspect(self.path)
        if damage is None:
            return
        if not accept_wal_loss:
            raise StoreError(
                f"{damage.problem}. Restore a backup, or open it anyway, accepting the loss, "
                "with --accept-wal-loss"
            )
        log.error(
            "opening a database that lost commits",
            extra={"db": self.path, "problem": damage.problem},
        )

    def _mark_closed_cleanly(self, closed: bool) -> None:
        """Write the marker sqlite_wal reads, and fold the log into the file so that the file
        itself holds it (a checkpoint that other readers hold back folds in at the next one)."""
        if self.path == ":memory:":
            return
        with self._write_lock:
            self._writer.execute(
                f"INSERT OR REPLACE INTO {sqlite_wal.MARKER_TABLE} (name, value) "
                "VALUES ('closed_cleanly', ?)",
                (int(closed),),
            )
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def reads_on_loop(self) -> bool:
        """A read by key takes tens of microseconds on a reader connection of its own, which
        never waits for the writer (WAL): cheaper done in place than handed to a thread."""
        return self.path != ":memory:"

    @property
    def writes_on_loop(self) -> bool:
        """Without an fsync per commit (durability normal), a small write transaction takes
        tens of microseconds: less than handing it to another thread and back."""
        return self.durability is Durability.NORMAL

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as exc:
            raise _wrap(exc, f"cannot open SQLite database {self.path}") from exc
        return conn

    def _migrate(self) -> None:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL DEFAULT (unixepoch()))"
                )
                applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for version, script in MIGRATIONS:
                    if version in applied:
                        continue
                    for statement in _split_script(script):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
                    log.info("applied migration", extra={"version": version, "db": self.path})
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK") if conn.in_transaction else None
                raise _wrap(exc, "schema migration failed") from exc

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[SQLiteTx]:
        outer: SQLiteTx | None = getattr(self._current, "tx", None)
        if outer is not None:
            yield from self._savepoint(outer)
            return
        with self._idle:
            if self._closed:
                raise StoreError("the store is closed")
            self._active += 1
        try:
            if write or self.path == ":memory:":
                with self._write_lock:
                    try:
                        yield from self._run(self._writer, "BEGIN IMMEDIATE", nest=True)
                    finally:
                        self._current.tx = None
            else:
                yield from self._run(self._reader(), "BEGIN")
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(
        self, conn: sqlite3.Connection, begin: str, *, nest: bool = False
    ) -> Iterator[SQLiteTx]:
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise _wrap(exc, "cannot start a transaction") from exc
        try:
            tx = SQLiteTx(conn)
            if nest:
                self._current.tx = tx
            yield tx
            _check_still_open(conn)
            conn.execute("COMMIT")
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            _rollback(conn)
            raise _wrap(exc, "transaction failed") from exc
        except BaseException:
            _rollback(conn)
            raise

    def _savepoint(self, outer: SQLiteTx) -> Iterator[SQLiteTx]:
        conn = outer._conn
        outer._depth += 1
        name = f"nested{outer._depth}"
        try:
            _check_still_open(conn)
            try:
                conn.execute(f"SAVEPOINT {name}")
            except sqlite3.Error as exc:
                raise _wrap(exc, "cannot start a savepoint") from exc
            try:
                yield outer
            except BaseException as exc:
                try:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                except sqlite3.Error:
                    log.exception("rollback to a savepoint failed")
                if isinstance(exc, sqlite3.Error | UnicodeEncodeError):
                    raise _wrap(exc, "transaction failed") from exc
                raise
            try:
                conn.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                raise _wrap(exc, "transaction failed") from exc
        finally:
            outer._depth -= 1

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._connect()
            self._readers.conn = conn
            with self._write_lock:
                self._reader_conns.append(conn)
        return conn

    def maintain(self) -> None:
        """Nothing to do: SQLite's counters are exact rows, updated by one writer."""

    def close(self, *, wait_s: float = 10.0) -> None:
        """Refuse new transactions, wait up to `wait_s` for running ones, close the connections."""
        with self._idle:
            if self._closed:
                return
            self._closed = True
            if not self._idle.wait_for(lambda: self._active == 0, timeout=wait_s):
                log.warning(
                    "closing the store with transactions still running", extra={"db": self.path}
                )
                return  # leave the connections to the process exit rather than crash a reader
        with self._write_lock:
            for conn in self._reader_conns:
                conn.close()
            try:
                self._mark_closed_cleanly(True)
            except sqlite3.Error as exc:  # a full disk: the next open checks the log instead
                log.warning(
                    "could not mark the database closed", extra={"db": self.path, "error": str(exc)}
                )
            self._writer.close()


def _check_still_open(conn: sqlite3.Connection) -> None:
    """Raise if SQLite ended the transaction on its own.

    On some errors (a full disk, an I/O error) SQLite rolls back the whole transaction, savepoints
    included. Whoever caught that error must not go on: every later statement would run, and
    commit, on its own, and the work before it is gone. The group commit keeps each call's error
    to itself, so this is where the group learns that none of it can be stored.
    """
    if not conn.in_transaction:
        raise StoreError(
            "the database rolled back the transaction after an earlier error (a full disk?); "
            "nothing of it was stored"
        )


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")


def _wrap(exc: sqlite3.Error | UnicodeEncodeError, what: str) -> StoreError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StoreBusyError(f"{what}: the database is locked by another writer ({message})")
    if isinstance(exc, UnicodeEncodeError | sqlite3.DataError):
        # Text with no UTF-8 form (a lone surrogate), a string or blob over SQLite's limit.
        return StoreRefusedError(f"{what}: the database cannot store this data ({message})")
    return StoreError(f"{what}: {message}")


def _split_script(script: str) -> list[str]:
    """Statements of a migration script; trigger bodies keep their inner semicolons."""
    statements: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    return statements


_MAY_LEASE = (
    "EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_ready WHERE state = 'queued' "
    "AND held_on IS NULL AND queue IN ({queues})) "
    "OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_due WHERE state = 'pending' "
    "AND deps_left = 0 AND not_before <= ?) "
    "OR EXISTS (SELECT 1 FROM limit_wakes WHERE at <= ?)"
)
"""What StoreTx.may_lease asks: the three things a lease can take, each one index probe."""


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SQLiteTx(SQLiteBulk, SQLitePlacement, SQLiteLimits):
    """StoreTx on one SQLite connection. Row locks are moot: the transaction holds the write lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._depth = 0  # savepoints open inside this transaction

    def _tasks_where(
        self, where: str, params: Sequence[Any], *, index: str | None = None
    ) -> list[Task]:
        # Hot paths name their partial index: without statistics the planner may prefer the
        # (state, seq) index and sort every pending or running row instead.
        source = f"{_TASK_SELECT} INDEXED BY {index}" if index else _TASK_SELECT
        rows = self._conn.execute(f"{source} WHERE {where}", params).fetchall()
        return [codec.task_from_row(row) for row in rows]

    # tasks
    def insert_tasks(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        cols = codec.INSERT_COLUMNS
        # executemany cannot return rows, so take the next seqs ourselves: this transaction holds
        # the only write lock, and INTEGER PRIMARY KEY accepts explicit values.
        (last,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        for offset, task in enumerate(tasks, start=1):
            task.seq = last + offset
        self._conn.executemany(
            f"INSERT INTO tasks (seq, {', '.join(cols)}) VALUES (?, {_marks(len(cols))})",
            [(t.seq, *codec.task_insert_row(t)) for t in tasks],
        )

    def insert_dependencies(self, edges: Sequence[tuple[TaskId, TaskId]]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO dependencies (task_id, depends_on) VALUES (?, ?)", edges
        )

    def get_tasks(self, ids: Collection[TaskId], *, for_update: bool = False) -> dict[TaskId, Task]:
        found: dict[TaskId, Task] = {}
        for chunk in chunked(list(ids), _MAX_PARAMS):
            for task in self._tasks_where(f"id IN ({_marks(len(chunk))})", chunk):
                found[task.id] = task
        return found

    def find_by_keys(self, keys: Collection[str]) -> dict[str, Task]:
        found: dict[str, Task] = {}
        for chunk in chunked(list(keys), _MAX_PARAMS):
            for task in self._tasks_where(f"key IN ({_marks(len(chunk))})", chunk):
                assert task.key is not None
                found[task.key] = task
        return found

    def update_tasks(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        sets = ", ".join(f"{col} = ?" for col in codec.MUTABLE_COLUMNS)
        self._conn.executemany(
            f"UPDATE tasks SET {sets} WHERE id = ?", [codec.task_update_row(t) for t in tasks]
        )

    def delete_tasks(self, ids: Collection[TaskId]) -> None:
        for chunk in chunked(list(ids), _MAX_PARAMS):
            marks = _marks(len(chunk))
            self._conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", chunk)
            self._conn.execute(f"DELETE FROM dependencies WHERE task_id IN ({marks})", chunk)
            self._conn.execute(f"DELETE FROM dependencies WHERE depends_on IN ({marks})", chunk)
            self._conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", chunk)

    def dependents(self, ids: Collection[TaskId]) -> dict[TaskId, list[TaskId]]:
        found: dict[TaskId, list[TaskId]] = {}
        for chunk in chunked(list(ids), _MAX_PARAMS):
            rows = self._conn.execute(
                f"SELECT depends_on, task_id FROM dependencies WHERE depends_on IN ({_marks(len(chunk))})",
                chunk,
            )
            for parent, child in rows:
                found.setdefault(parent, []).append(child)
        return found

    def due_pending(self, now: datetime, limit: int) -> list[Task]:
        return self._tasks_where(
            "state = 'pending' AND deps_left = 0 AND not_before <= ? ORDER BY not_before LIMIT ?",
            (now.timestamp(), limit),
            index="tasks_due",
        )

    def next_due(self) -> datetime | None:
        row = self._conn.execute(
            "SELECT min(not_before) FROM tasks INDEXED BY tasks_due "
            "WHERE state = 'pending' AND deps_left = 0"
        ).fetchone()
        return codec.from_epoch(row[0])

    def queued_candidates(
        self,
        queue: str,
        limit: int,
        *,
        after: tuple[int, int] | None = None,
        runnable: RunnableBy | None = None,
    ) -> list[Task]:
        runs, runs_params = runnable_clause(runnable, placement_sql.SQLITE)
        if after is None:
            return self._tasks_where(
                f"state = 'queued' AND held_on IS NULL AND queue = ?{runs} "
                "ORDER BY priority DESC, seq LIMIT ?",
                (queue, *runs_params, limit),
                index="tasks_ready",
            )
        priority, seq = after
        # A range on priority keeps the index scan; the few rows of the same priority already
        # seen are filtered out.
        return self._tasks_where(
            "state = 'queued' AND held_on IS NULL AND queue = ? AND priority <= ? "
            "AND NOT (priority = ? AND seq <= ?)"
            f"{runs} ORDER BY priority DESC, seq LIMIT ?",
            (queue, priority, priority, seq, *runs_params, limit),
            index="tasks_ready",
        )

    def read_ahead(self, reads: LeaseReads | ReportReads) -> None:
        pass  # each read is a call into the library, not a round trip

    def may_lease(self, queues: Sequence[str], now: datetime) -> bool:
        at = now.timestamp()
        row = self._conn.execute(
            f"SELECT {_MAY_LEASE.format(queues=_marks(len(queues)))}", (*queues, at, at)
        ).fetchone()
        return bool(row[0])

    def expired_leases(self, now: datetime, limit: int) -> list[Task]:
        return self._tasks_where(
            "state = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?",
            (now.timestamp(), limit),
            index="tasks_lease_expiry",
        )

    def running_on_worker(self, worker_id: WorkerId) -> list[Task]:
        return self._tasks_where(
            "state = 'running' AND worker_id = ?", (worker_id,), index="tasks_by_worker"
        )

    def finished_before(self, cutoff: datetime, limit: int) -> list[Task]:
        return self._tasks_where(
            "finished_at < ? ORDER BY finished_at LIMIT ?",
            (cutoff.timestamp(), limit),
            index="tasks_finished",
        )

    # attempts
    def insert_attempts(self, attempts: Sequence[Attempt]) -> None:
        cols = codec.ATTEMPT_COLUMNS
        self._conn.executemany(
            f"INSERT INTO attempts ({', '.join(cols)}) VALUES ({_marks(len(cols))})",
            [codec.attempt_row(a) for a in attempts],
        )

    def finish_attempts(self, ends: Sequence[AttemptEnd]) -> None:
        self._conn.executemany(
            "UPDATE attempts SET finished_at = ?, outcome = ?, error = ?, traceback = ?, "
            "stdout_tail = ?, stderr_tail = ? WHERE task_id = ? AND number = ?",
            [
                (
                    e.finished_at.timestamp(),
                    e.outcome.value,
                    e.error,
                    e.traceback,
                    e.stdout_tail,
                    e.stderr_tail,
                    e.task_id,
                    e.number,
                )
                for e in ends
            ],
        )

    def extend_attempt_leases(
        self, attempts: Sequence[tuple[TaskId, int]], lease_expires_at: datetime
    ) -> None:
        expires = lease_expires_at.timestamp()
        self._conn.executemany(
            "UPDATE attempts SET lease_expires_at = ? WHERE task_id = ? AND number = ?",
            [(expires, task_id, number) for task_id, number in attempts],
        )

    def get_attempts(self, task_id: TaskId) -> list[Attempt]:
        rows = self._conn.execute(
            f"SELECT {', '.join(codec.ATTEMPT_COLUMNS)} FROM attempts WHERE task_id = ? ORDER BY number",
            (task_id,),
        )
        return [codec.attempt_from_row(row) for row in rows]

    # workers
    def insert_worker(self, worker: Worker) -> None:
        cols = codec.WORKER_COLUMNS
        self._conn.execute(
            f"INSERT INTO workers ({', '.join(cols)}) VALUES ({_marks(len(cols))})",
            codec.worker_row(worker),
        )

    def get_worker(self, worker_id: WorkerId, *, for_update: bool = False) -> Worker | None:
        row = self._conn.execute(
            f"SELECT {', '.join(codec.WORKER_COLUMNS)} FROM workers WHERE id = ?", (worker_id,)
        ).fetchone()
        return None if row is None else codec.worker_from_row(row)

    def update_worker(self, worker: Worker) -> None:
        cols = codec.WORKER_COLUMNS[1:]
        row = codec.worker_row(worker)
        self._conn.execute(
            f"UPDATE workers SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
            (*row[1:], row[0]),
        )

    def list_workers(self) -> list[Worker]:
        rows = self._conn.execute(
            f"SELECT {', '.join(codec.WORKER_COLUMNS)} FROM workers ORDER BY registered_at"
        )
        return [codec.worker_from_row(row) for row in rows]

    def stale_workers(self, seen_before: datetime, limit: int) -> list[Worker]:
        rows = self._conn.execute(
            f"SELECT {', '.join(codec.WORKER_COLUMNS)} FROM workers "
            "WHERE state IN ('alive', 'draining') AND last_seen_at < ? LIMIT ?",
            (seen_before.timestamp(), limit),
        )
        return [codec.worker_from_row(row) for row in rows]

    def delete_workers_gone_before(self, cutoff: datetime) -> int:
        return self._conn.execute(
            "DELETE FROM workers WHERE state IN ('dead', 'gone') AND last_seen_at < ?",
            (cutoff.timestamp(),),
        ).rowcount

    # outages
    def timers_ran(self, now: datetime) -> datetime | None:
        row = self._conn.execute("SELECT ran_at FROM timer_runs WHERE name = 'timers'").fetchone()
        self._conn.execute(
            "INSERT INTO timer_runs (name, ran_at) VALUES ('timers', ?) "
            "ON CONFLICT (name) DO UPDATE SET ran_at = excluded.ran_at",
            (now.timestamp(),),
        )
        return None if row is None else codec.from_epoch(row[0])

    def shift_leases_and_silence(self, by: timedelta) -> None:
        seconds = by.total_seconds()
        self._conn.execute(
            "UPDATE attempts SET lease_expires_at = lease_expires_at + ? "
            "WHERE (task_id, number) IN (SELECT id, attempts FROM tasks WHERE state = 'running')",
            (seconds,),
        )
        self._conn.execute(
            "UPDATE tasks SET lease_expires_at = lease_expires_at + ? WHERE state = 'running'",
            (seconds,),
        )
        self._conn.execute(
            "UPDATE workers SET last_seen_at = last_seen_at + ? "
            "WHERE state IN ('alive', 'draining')",
            (seconds,),
        )

    # secrets
    def shared_secret(self, name: str, new: bytes) -> bytes:
        self._conn.execute(
            "INSERT INTO shared_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (name, new.hex()),
        )
        row = self._conn.execute("SELECT value FROM shared_secrets WHERE name = ?", (name,))
        return bytes.fromhex(row.fetchone()[0])

    # schedules
    def put_schedule(self, schedule: Schedule) -> None:
        cols = codec.SCHEDULE_COLUMNS
        self._conn.execute(
            f"INSERT OR REPLACE INTO schedules ({', '.join(cols)}) VALUES ({_marks(len(cols))})",
            codec.schedule_row(schedule),
        )

    def get_schedule(self, name: str, *, for_update: bool = False) -> Schedule | None:
        return next(iter(self._schedules("name = ?", (name,))), None)

    def list_schedules(self) -> list[Schedule]:
        return self._schedules("1 ORDER BY name", ())

    def delete_schedule(self, name: str) -> bool:
        return self._conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0

    def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        return self._schedules(
            "next_run_at <= ? ORDER BY next_run_at LIMIT ?", (now.timestamp(), limit)
        )

    def _schedules(self, where: str, params: Sequence[Any]) -> list[Schedule]:
        rows = self._conn.execute(
            f"SELECT {', '.join(codec.SCHEDULE_COLUMNS)} FROM schedules WHERE {where}", params
        )
        return [codec.schedule_from_row(row) for row in rows]

    # pauses (the transaction holds the only write lock: a lease never crosses a pause)
    def put_pause(self, pause: Pause) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO pauses ({', '.join(codec.PAUSE_COLUMNS)}) VALUES (?, ?, ?, ?)",
            codec.pause_row(pause),
        )

    def delete_pause(self, scope: PauseScope, name: str) -> Pause | None:
        row = self._conn.execute(
            f"DELETE FROM pauses WHERE scope = ? AND name = ? RETURNING {_PAUSES}",
            (scope.value, name),
        ).fetchone()
        return None if row is None else codec.pause_from_row(row)

    def list_pauses(self) -> list[Pause]:
        rows = self._conn.execute(f"SELECT {_PAUSES} FROM pauses ORDER BY scope, name")
        return [codec.pause_from_row(row) for row in rows]

    def pauses_for_lease(self) -> list[Pause]:
        return self.list_pauses()

    def end_pauses(self, now: datetime) -> list[Pause]:
        rows = self._conn.execute(
            f"DELETE FROM pauses WHERE until <= ? RETURNING {_PAUSES}", (now.timestamp(),)
        ).fetchall()
        return [codec.pause_from_row(row) for row in rows]

    # reads for clients
    def count_tasks(self) -> list[StateCount]:
        rows = self._conn.execute("SELECT state, queue, n FROM task_counts WHERE n > 0")
        return [StateCount(TaskState(state), queue, n) for state, queue, n in rows]

    def list_tasks(self, where: TaskFilter, after_seq: int | None, limit: int) -> list[Task]:
        condition, params = codec.task_filter(where, after_seq, codec.SQLITE)
        return self._tasks_where(f"{condition} ORDER BY seq DESC LIMIT ?", [*params, limit])
