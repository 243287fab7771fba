"""Vacuuming the task tables when leases and reports have left many dead rows behind.

Every lease and every report rewrites a task's row, and PostgreSQL keeps the old version, and
its index entries, until a vacuum. The ready-task index is read from its start on every lease,
so the dead entries of tasks leased since the last vacuum pile up exactly where each lease
looks: after 20,000 tasks had run, finding the next ready task read 102 index pages instead of
5. Autovacuum comes at most once a minute per database and, by default, only once a fifth of
the table is dead; a busy queue churns far faster. So the server's maintenance pass (every
timer pass) asks how many dead rows the task table holds, and past `DEAD_ROWS` it vacuums the
task and attempt tables in a thread of its own, never two at once, skipping the tables if
another server's vacuum holds them. A vacuum does not block reads or writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DEAD_ROWS = 10_000
"""Dead task rows (PostgreSQL's own count, a second or so behind) that start a vacuum."""

DEAD_ROWS_QUERY = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'tasks'::regclass"
# INDEX_CLEANUP ON: with few dead rows against a large table, VACUUM would otherwise leave the
# indexes alone, and the dead index entries are what leases trip over.
VACUUM = "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) tasks, attempts"

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class TaskVacuum:
    def __init__(self, connect: Connect, *, dead_rows: int = DEAD_ROWS) -> None:
        self._connect = connect
        self._dead_rows = dead_rows
        self._running: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        """The running vacuum's connection, so that stop() can cancel it."""
        self._lock = threading.Lock()
        self._stopping = False
        self.runs = 0
        """Vacuums finished, for tests and logs."""

    def consider(self, dead_rows: int) -> bool:
        """Start a vacuum in the background if `dead_rows` calls for one and none is running."""
        if dead_rows < self._dead_rows:
            return False
        with self._lock:
            if self._stopping or (self._running is not None and self._running.is_alive()):
                return False
            self._running = threading.Thread(
                target=self._vacuum, args=(dead_rows,), name="conveyor-vacuum", daemon=True
            )
            self._running.start()
        return True

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the running vacuum, if any, has finished."""
        with self._lock:
            running = self._running
        if running is not None:
            running.join(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel the running vacuum, if any (a large table's can take minutes; a stopping server
        must not wait for it), and wait for its thread. The next vacuum starts over."""
        with self._lock:
            conn = self._conn
            self._stopping = True
        if conn is not None:
            conn.cancel_safe(timeout=timeout_s)
        self.wait(timeout_s)

    def _vacuum(self, dead_rows: int) -> None:
        try:
            with self._connect() as conn:
                # VACUUM cannot run inside a transaction. The pool's connections are in
                # autocommit mode already (postgres_batch.py sends BEGIN and COMMIT itself).
                conn.autocommit = True
                with self._lock:
                    self._conn = conn
                try:
                    conn.execute(VACUUM)
                finally:
                    with self._lock:
                        self._conn = None
        except psycopg.Error as exc:
            if self._stopping:
                log.info("vacuum of the task tables cancelled: the store is closing")
            else:
                log.warning("vacuuming the task tables failed", extra={"error": str(exc)})
            return
        self.runs += 1
        log.info("vacuumed the task tables", extra={"dead_rows": dead_rows})
