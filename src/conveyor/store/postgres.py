"""The PostgreSQL store: many servers on one database, claims with FOR UPDATE SKIP LOCKED.

psycopg 3 with a connection pool and hand-written SQL. Every statement that can take many rows
takes them in one round trip (`= ANY(%s)`, executemany in pipeline mode, COPY for large inserts).
Rows are locked in id order so that two transactions touching the same tasks cannot deadlock.
Connection failures become StoreBusyError (a 503 with Retry-After); the pool replaces broken
connections by itself, so the server recovers when the database is back. A transaction opened on
a thread already inside one of this store's transactions is a savepoint of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from conveyor.core.models import Attempt, Task, Worker
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.schedules import Schedule
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId, WorkerId
from conveyor.errors import DuplicateKeyError, StoreBusyError, StoreError, StoreRefusedError
from conveyor.store import codec, placement_sql
from conveyor.store.base import (
    AttemptEnd,
    LeaseReads,
    ReportReads,
    RunnableBy,
    StateCount,
    TaskFilter,
)
from conveyor.store.placement_sql import PostgresPlacement, runnable_clause
from conveyor.store.postgres_batch import BatchedConnection, TransactionNotCommitted
from conveyor.store.postgres_bulk import PostgresBulk
from conveyor.store.postgres_feed import PostgresChangeFeed
from conveyor.store.postgres_limits import PostgresLimits, lease_wakes_query
from conveyor.store.postgres_schema import COMPACT_COUNTS, MIGRATIONS
from conveyor.store.postgres_vacuum import DEAD_ROWS, DEAD_ROWS_QUERY, TaskVacuum

log = logging.getLogger(__name__)

_TASKS = ", ".join(codec.TASK_COLUMNS)
_ATTEMPTS = ", ".join(codec.ATTEMPT_COLUMNS)
_WORKERS = ", ".join(codec.WORKER_COLUMNS)
_COPY_FROM = 64  # inserts of at least this many tasks use COPY
_HELD_ROWS = 16  # writes of at most this many rows are bound and held (postgres_batch.py)
_MIGRATION_LOCK = 7_411_337  # pg_advisory_xact_lock key: one server migrates at a time
_PAUSE_LOCK = 7_411_338  # leases take it shared, a pause alone: no lease crosses a pause
_PAUSES = ", ".join(codec.PAUSE_COLUMNS)
_LEASE_PAUSES = (
    f"SELECT pg_advisory_xact_lock_shared({_PAUSE_LOCK}); "
    f"SELECT {_PAUSES} FROM pauses ORDER BY scope, name"
)


class PostgresStore:
    """A Store on a PostgreSQL database (`postgresql://user@host:5432/db`).

    `schema` puts every table in that schema (created if missing): several Conveyor installations,
    or test runs, can share one database without seeing each other.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 5.0,
        vacuum_after_dead_rows: int = DEAD_ROWS,
    ) -> None:
        self.url = url
        self.schema = schema
        kwargs: dict[str, Any] = {
            # BEGIN and COMMIT are sent by BatchedConnection, with the statements around them,
            # and it prepares statements itself (postgres_batch.py: psycopg's would be dropped).
            "autocommit": True,
            "prepare_threshold": None,
            "connect_timeout": max(1, int(connect_timeout_s)),
        }
        if schema:
            kwargs["options"] = f"-c search_path={_identifier(schema)}"
        self._pool = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=min_connections,
            max_size=max_connections,
            timeout=connect_timeout_s,
            open=False,
            name="conveyor",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreBusyError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
        self._closed = False
        self._current = threading.local()  # the transaction open on this thread, if any
        self._max_connections = max_connections
        self.vacuum = TaskVacuum(self._pool.connection, dead_rows=vacuum_after_dead_rows)
        self._migrate()

    @property
    def parallel_writes(self) -> int:
        """Write transactions worth running at once from one server: each spends most of its
        time waiting on round trips, and concurrent ones do not block each other (SKIP LOCKED,
        append-only counters). Half the pool, so that reads always find a connection."""
        return max(1, min(4, self._max_connections // 2))

    def _migrate(self) -> None:
        with self.transaction() as tx:
            conn = tx.conn
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if self.schema:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_identifier(self.schema)}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in MIGRATIONS:
                if version not in applied:
                    conn.execute(script)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    log.info("applied migration", extra={"version": version})

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[PostgresTx]:
        if self._closed:
            raise StoreError("the store is closed")
        outer: BatchedConnection | None = getattr(self._current, "conn", None)
        try:
            if outer is not None and outer.in_transaction:
                # Inside a transaction of this thread: a savepoint of it (see group commit).
                name = outer.savepoint()
                try:
                    yield PostgresTx(outer)
                    outer.release(name)
                except BaseException:
                    outer.rollback_to(name)
                    raise
                return
            if outer is not None:  # a write inside a read: a transaction of the read's connection
                yield from self._transaction_on(outer)
                return
            with self._pool.connection() as conn:
                batched = BatchedConnection(conn)
                self._current.conn = batched
                try:
                    if write:
                        yield from self._transaction_on(batched)
                    else:
                        # A read needs no BEGIN and COMMIT: under READ COMMITTED, PostgreSQL's
                        # default, every statement sees its own snapshot inside a transaction
                        # too, so each SELECT is one round trip instead of three.
                        yield PostgresTx(batched)
                        batched.flush()
                finally:
                    self._current.conn = None
        except PoolTimeout as exc:
            raise StoreBusyError(
                f"no PostgreSQL connection available: {exc}", retry_after_s=2.0
            ) from exc
        except TransactionNotCommitted as exc:
            raise StoreBusyError(
                f"the transaction did not commit; nothing was stored, retry: {exc}",
                retry_after_s=1.0,
            ) from exc
        except pg_errors.UniqueViolation as exc:
            raise DuplicateKeyError(
                f"a unique value was taken concurrently: {exc.diag.message_detail}"
            ) from exc
        except (
            pg_errors.DeadlockDetected,
            pg_errors.SerializationFailure,
            pg_errors.LockNotAvailable,
        ) as exc:
            raise StoreBusyError(f"transaction conflicted with another; retry: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreBusyError(f"PostgreSQL is unreachable: {exc}", retry_after_s=2.0) from exc
        except (psycopg.DataError, UnicodeEncodeError) as exc:
            # NUL in text, text with no UTF-8 form, a number out of a column's range.
            raise StoreRefusedError(f"PostgreSQL cannot store this data: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    @staticmethod
    def _transaction_on(conn: BatchedConnection) -> Iterator[PostgresTx]:
        """BEGIN ... COMMIT on `conn`; nothing of it is kept unless the COMMIT said so (see
        postgres_batch.py: a transaction whose connection broke, or whose error was caught
        above, must not be answered as stored)."""
        conn.begin()
        try:
            yield PostgresTx(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def change_feed(self) -> PostgresChangeFeed:
        """A feed that tells the other servers on this database what this one committed."""
        channel = f"conveyor_{self.schema or 'public'}_changes"
        kwargs = {"options": f"-c search_path={_identifier(self.schema)}"} if self.schema else {}
        return PostgresChangeFeed(self.url, channel, kwargs)

    def maintain(self) -> None:
        """Fold the count deltas into task_counts, and vacuum the task tables in the background
        once leases and reports have left many dead rows (postgres_vacuum.py); safe to run on
        several servers at once."""
        with self.transaction() as tx:
            tx.conn.execute(COMPACT_COUNTS)
            row = tx.conn.execute(DEAD_ROWS_QUERY).fetchone()
        self.vacuum.consider(int(row[0]) if row and row[0] is not None else 0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.vacuum.stop()
            self._pool.close()


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"schema name {name!r} must be letters, digits and underscores")
    return f'"{name}"'


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"


def _epoch(when: datetime) -> float:
    return when.timestamp()


def _tasks_query(condition: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    return f"SELECT {_TASKS} FROM tasks WHERE {condition}", params


def _by_ids(ids: Collection[TaskId], *, for_update: bool) -> tuple[str, tuple[list[TaskId]]]:
    """get_tasks' condition, for _tasks."""
    lock = " ORDER BY id FOR UPDATE" if for_update else ""
    return f"id = ANY(%s){lock}", (list(ids),)


def _dependents_query(ids: Collection[TaskId]) -> tuple[str, tuple[list[TaskId]]]:
    return (
        "SELECT depends_on, task_id FROM dependencies WHERE depends_on = ANY(%s)",
        (list(ids),),
    )


def _worker_query(worker_id: WorkerId, *, for_update: bool) -> tuple[str, tuple[str]]:
    lock = " FOR UPDATE" if for_update else ""
    return f"SELECT {_WORKERS} FROM workers WHERE id = %s{lock}", (worker_id,)


def _due_query(now: datetime, limit: int) -> tuple[str, tuple[float, int]]:
    """due_pending's condition, for _tasks."""
    return (
        "state = 'pending' AND deps_left = 0 AND not_before <= %s "
        "ORDER BY not_before LIMIT %s FOR UPDATE SKIP LOCKED",
        (_epoch(now), limit),
    )


class PostgresTx(PostgresBulk, PostgresPlacement, PostgresLimits):
    """StoreTx on one connection inside one transaction."""

    def __init__(self, conn: BatchedConnection) -> None:
        self.conn = conn

    def _execute_rows(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement per row that returns nothing: a few are held back to go with the next
        statement sent (postgres_batch.py); many go now, pipelined by executemany, in one round
        trip."""
        if len(rows) <= _HELD_ROWS:
            for row in rows:
                self.conn.defer(query, row)
        else:
            self.conn.cursor().executemany(query, rows)

    def _tasks(self, sql: str, params: Sequence[Any]) -> list[Task]:
        rows = self.conn.execute(*_tasks_query(sql, params)).fetchall()
        return [codec.task_from_row(row) for row in rows]

    def read_ahead(self, reads: LeaseReads | ReportReads) -> None:
        # The statements the calls will make, built by the same functions, so that each call
        # finds its answer (postgres_batch.py); in the order the call makes them.
        if isinstance(reads, ReportReads):
            self.conn.read_ahead(
                [
                    (*_tasks_query(*_by_ids(reads.task_ids, for_update=True)), 1),
                    (*_dependents_query(reads.task_ids), 1),
                ]
            )
            return
        self.conn.read_ahead(
            [
                (*_worker_query(reads.worker_id, for_update=True), 1),
                (*_tasks_query(*_due_query(reads.now, reads.due_limit)), 1),
                (_LEASE_PAUSES, None, 2),
                (*lease_wakes_query(reads.now, reads.wake_keys), 1),
            ]
        )

    # tasks
    def insert_tasks(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        if len(tasks) < _COPY_FROM:
            # The database numbers the rows and says which numbers it gave, in the same round
            # trip (one statement per row, pipelined, when there are several).
            marks = ", ".join(["%s"] * len(codec.INSERT_COLUMNS))
            query = (
                f"INSERT INTO tasks ({', '.join(codec.INSERT_COLUMNS)}) VALUES ({marks}) "
                "RETURNING seq"
            )
            rows = [codec.task_insert_row(t) for t in tasks]
            if len(rows) == 1:
                (tasks[0].seq,) = self.conn.execute(query, rows[0]).fetchone()  # type: ignore[misc]
                return
            cursor = self.conn.cursor()
            cursor.executemany(query, rows, returning=True)
            for task in tasks:
                (task.seq,) = cursor.fetchone()  # type: ignore[misc]
                cursor.nextset()
            return
        # COPY cannot return the numbers: take them first.
        seqs = self.conn.execute(
            "SELECT nextval(pg_get_serial_sequence('tasks', 'seq')) FROM generate_series(1, %s)",
            (len(tasks),),
        ).fetchall()
        for task, (seq,) in zip(tasks, sorted(seqs), strict=True):
            task.seq = seq
        columns = f"seq, {', '.join(codec.INSERT_COLUMNS)}"
        with self.conn.cursor().copy(f"COPY tasks ({columns}) FROM STDIN") as copy:
            for task in tasks:
                copy.write_row((task.seq, *codec.task_insert_row(task)))

    def insert_dependencies(self, edges: Sequence[tuple[TaskId, TaskId]]) -> None:
        if edges:
            self.conn.defer(
                "INSERT INTO dependencies (task_id, depends_on) "
                "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                ([e[0] for e in edges], [e[1] for e in edges]),
            )

    def get_tasks(self, ids: Collection[TaskId], *, for_update: bool = False) -> dict[TaskId, Task]:
        if not ids:
            return {}
        return {t.id: t for t in self._tasks(*_by_ids(ids, for_update=for_update))}

    def find_by_keys(self, keys: Collection[str]) -> dict[str, Task]:
        if not keys:
            return {}
        return {t.key: t for t in self._tasks("key = ANY(%s)", (list(keys),)) if t.key is not None}

    def update_tasks(self, tasks: Sequence[Task]) -> None:
        if tasks:
            sets = ", ".join(f"{col} = %s" for col in codec.MUTABLE_COLUMNS)
            self._execute_rows(
                f"UPDATE tasks SET {sets} WHERE id = %s", [codec.task_update_row(t) for t in tasks]
            )

    def delete_tasks(self, ids: Collection[TaskId]) -> None:
        if ids:
            every = (list(ids),)
            self.conn.execute("DELETE FROM attempts WHERE task_id = ANY(%s)", every)
            self.conn.execute(
                "DELETE FROM dependencies WHERE task_id = ANY(%s) OR depends_on = ANY(%s)",
                every * 2,
            )
            self.conn.execute("DELETE FROM tasks WHERE id = ANY(%s)", every)

    def dependents(self, ids: Collection[TaskId]) -> dict[TaskId, list[TaskId]]:
        found: dict[TaskId, list[TaskId]] = {}
        if ids:
            rows = self.conn.execute(*_dependents_query(ids))
            for parent, child in rows:
                found.setdefault(parent, []).append(child)
        return found

    def due_pending(self, now: datetime, limit: int) -> list[Task]:
        return self._tasks(*_due_query(now, limit))

    def next_due(self) -> datetime | None:
        row = self.conn.execute(
            "SELECT min(not_before) FROM tasks WHERE state = 'pending' AND deps_left = 0"
        ).fetchone()
        return codec.from_epoch(row[0] if row else None)

    def queued_candidates(
        self,
        queue: str,
        limit: int,
        *,
        after: tuple[int, int] | None = None,
        runnable: RunnableBy | None = None,
    ) -> list[Task]:
        runs, runs_params = runnable_clause(runnable, placement_sql.POSTGRES)
        if after is None:
            return self._tasks(
                f"state = 'queued' AND held_on IS NULL AND queue = %s{runs} "
                "ORDER BY priority DESC, seq LIMIT %s "
                "FOR UPDATE SKIP LOCKED",
                (queue, *runs_params, limit),
            )
        priority, seq = after
        return self._tasks(
            "state = 'queued' AND held_on IS NULL AND queue = %s AND priority <= %s "
            "AND NOT (priority = %s AND seq <= %s)"
            f"{runs} ORDER BY priority DESC, seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (queue, priority, priority, seq, *runs_params, limit),
        )

    def may_lease(self, queues: Sequence[str], now: datetime) -> bool:
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND held_on IS NULL "
            "AND queue = ANY(%(queues)s)) "
            "OR EXISTS (SELECT 1 FROM tasks WHERE state = 'pending' AND deps_left = 0 "
            "AND not_before <= %(now)s) "
            "OR EXISTS (SELECT 1 FROM limit_wakes WHERE at <= %(now)s)",
            {"queues": list(queues), "now": now.timestamp()},
        ).fetchone()
        return bool(row and row[0])

    def expired_leases(self, now: datetime, limit: int) -> list[Task]:
        return self._tasks(
            "state = 'running' AND lease_expires_at < %s "
            "ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (_epoch(now), limit),
        )

    def running_on_worker(self, worker_id: WorkerId) -> list[Task]:
        return self._tasks(
            "state = 'running' AND worker_id = %s ORDER BY id FOR UPDATE", (worker_id,)
        )

    def finished_before(self, cutoff: datetime, limit: int) -> list[Task]:
        return self._tasks(
            "finished_at < %s ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (_epoch(cutoff), limit),
        )

    # attempts
    def insert_attempts(self, attempts: Sequence[Attempt]) -> None:
        if attempts:
            marks = ", ".join(["%s"] * len(codec.ATTEMPT_COLUMNS))
            self._execute_rows(
                f"INSERT INTO attempts ({_ATTEMPTS}) VALUES ({marks})",
                [codec.attempt_row(a) for a in attempts],
            )

    def finish_attempts(self, ends: Sequence[AttemptEnd]) -> None:
        if ends:
            self._execute_rows(
                "UPDATE attempts SET finished_at = %s, outcome = %s, error = %s, traceback = %s, "
                "stdout_tail = %s, stderr_tail = %s WHERE task_id = %s AND number = %s",
                [
                    (
                        _epoch(e.finished_at),
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
        if attempts:
            expires = _epoch(lease_expires_at)
            self._execute_rows(
                "UPDATE attempts SET lease_expires_at = %s WHERE task_id = %s AND number = %s",
                [(expires, task_id, number) for task_id, number in attempts],
            )

    def get_attempts(self, task_id: TaskId) -> list[Attempt]:
        rows = self.conn.execute(
            f"SELECT {_ATTEMPTS} FROM attempts WHERE task_id = %s ORDER BY number", (task_id,)
        )
        return [codec.attempt_from_row(row) for row in rows]

    # workers
    def insert_worker(self, worker: Worker) -> None:
        marks = ", ".join(["%s"] * len(codec.WORKER_COLUMNS))
        self.conn.execute(
            f"INSERT INTO workers ({_WORKERS}) VALUES ({marks})", codec.worker_row(worker)
        )

    def get_worker(self, worker_id: WorkerId, *, for_update: bool = False) -> Worker | None:
        row = self.conn.execute(*_worker_query(worker_id, for_update=for_update)).fetchone()
        return None if row is None else codec.worker_from_row(row)

    def update_worker(self, worker: Worker) -> None:
        columns = codec.WORKER_COLUMNS[1:]
        row = codec.worker_row(worker)
        self.conn.defer(
            f"UPDATE workers SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s",
            (*row[1:], row[0]),
        )

    def list_workers(self) -> list[Worker]:
        rows = self.conn.execute(f"SELECT {_WORKERS} FROM workers ORDER BY registered_at")
        return [codec.worker_from_row(row) for row in rows]

    def stale_workers(self, seen_before: datetime, limit: int) -> list[Worker]:
        rows = self.conn.execute(
            f"SELECT {_WORKERS} FROM workers WHERE state IN ('alive', 'draining') "
            "AND last_seen_at < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (_epoch(seen_before), limit),
        )
        return [codec.worker_from_row(row) for row in rows]

    def delete_workers_gone_before(self, cutoff: datetime) -> int:
        cur = self.conn.execute(
            "DELETE FROM workers WHERE state IN ('dead', 'gone') AND last_seen_at < %s",
            (_epoch(cutoff),),
        )
        return cur.rowcount

    # outages
    def timers_ran(self, now: datetime) -> datetime | None:
        first = self.conn.execute(
            "INSERT INTO timer_runs (name, ran_at) VALUES ('timers', %s) "
            "ON CONFLICT DO NOTHING RETURNING ran_at",
            (_epoch(now),),
        ).fetchone()
        if first is not None:
            return None
        # Locked: a server whose timers run at the same moment waits, then finds no gap.
        row = self.conn.execute(
            "SELECT ran_at FROM timer_runs WHERE name = 'timers' FOR UPDATE"
        ).fetchone()
        self.conn.execute("UPDATE timer_runs SET ran_at = %s WHERE name = 'timers'", (_epoch(now),))
        return None if row is None else codec.from_epoch(row[0])

    def shift_leases_and_silence(self, by: timedelta) -> None:
        seconds = by.total_seconds()
        self.conn.execute(
            "UPDATE attempts SET lease_expires_at = lease_expires_at + %s "
            "WHERE (task_id, number) IN (SELECT id, attempts FROM tasks WHERE state = 'running')",
            (seconds,),
        )
        self.conn.execute(
            "UPDATE tasks SET lease_expires_at = lease_expires_at + %s WHERE state = 'running'",
            (seconds,),
        )
        self.conn.execute(
            "UPDATE workers SET last_seen_at = last_seen_at + %s "
            "WHERE state IN ('alive', 'draining')",
            (seconds,),
        )

    # secrets
    def shared_secret(self, name: str, new: bytes) -> bytes:
        self.conn.execute(
            "INSERT INTO shared_secrets (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (name, new.hex()),
        )
        row = self.conn.execute("SELECT value FROM shared_secrets WHERE name = %s", (name,))
        return bytes.fromhex(row.fetchone()[0])  # type: ignore[index]

    # schedules
    def put_schedule(self, schedule: Schedule) -> None:
        cols = codec.SCHEDULE_COLUMNS
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        self.conn.execute(
            f"INSERT INTO schedules ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates}",
            codec.schedule_row(schedule),
        )

    def get_schedule(self, name: str, *, for_update: bool = False) -> Schedule | None:
        lock = " FOR UPDATE" if for_update else ""
        return next(iter(self._schedules(f"name = %s{lock}", (name,))), None)

    def list_schedules(self) -> list[Schedule]:
        return self._schedules("true ORDER BY name", ())

    def delete_schedule(self, name: str) -> bool:
        return self.conn.execute("DELETE FROM schedules WHERE name = %s", (name,)).rowcount > 0

    def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        return self._schedules(
            "next_run_at <= %s ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (_epoch(now), limit),
        )

    def _schedules(self, where: str, params: Sequence[Any]) -> list[Schedule]:
        rows = self.conn.execute(
            f"SELECT {', '.join(codec.SCHEDULE_COLUMNS)} FROM schedules WHERE {where}", params
        )
        return [codec.schedule_from_row(row) for row in rows]

    # pauses
    def put_pause(self, pause: Pause) -> None:
        # Alone on the lock that every lease shares (pauses_for_lease): leases in progress
        # commit first, and those that begin later wait for this transaction and see the pause.
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PAUSE_LOCK,))
        self.conn.execute(
            f"INSERT INTO pauses ({_PAUSES}) VALUES (%s, %s, %s, %s) ON CONFLICT (scope, name) "
            "DO UPDATE SET paused_at = EXCLUDED.paused_at, until = EXCLUDED.until",
            codec.pause_row(pause),
        )

    def delete_pause(self, scope: PauseScope, name: str) -> Pause | None:
        row = self.conn.execute(
            f"DELETE FROM pauses WHERE scope = %s AND name = %s RETURNING {_PAUSES}",
            (scope.value, name),
        ).fetchone()
        return None if row is None else codec.pause_from_row(row)

    def list_pauses(self) -> list[Pause]:
        rows = self.conn.execute(f"SELECT {_PAUSES} FROM pauses ORDER BY scope, name")
        return [codec.pause_from_row(row) for row in rows]

    def pauses_for_lease(self) -> list[Pause]:
        # Two statements in one round trip (no parameters: the simple query protocol): the read
        # takes its snapshot only once the lock is granted, so it sees any pause committed
        # while it waited.
        cursor = self.conn.execute(_LEASE_PAUSES)
        cursor.nextset()
        return [codec.pause_from_row(row) for row in cursor.fetchall()]

    def end_pauses(self, now: datetime) -> list[Pause]:
        rows = self.conn.execute(
            f"DELETE FROM pauses WHERE until <= %s RETURNING {_PAUSES}", (_epoch(now),)
        ).fetchall()
        return [codec.pause_from_row(row) for row in rows]

    # reads for clients
    def count_tasks(self) -> list[StateCount]:
        rows = self.conn.execute(
            "SELECT state, queue, sum(n) FROM (SELECT state, queue, n FROM task_counts "
            "UNION ALL SELECT state, queue, n FROM task_count_deltas) AS c "
            "GROUP BY state, queue HAVING sum(n) > 0"
        )
        return [StateCount(TaskState(state), queue, int(n)) for state, queue, n in rows]

    def list_tasks(self, where: TaskFilter, after_seq: int | None, limit: int) -> list[Task]:
        condition, params = codec.task_filter(where, after_seq, codec.POSTGRES)
        return self._tasks(f"{condition} ORDER BY seq DESC LIMIT %s", [*params, limit])
