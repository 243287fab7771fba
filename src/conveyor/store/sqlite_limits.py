"""SQLiteTx's part for concurrency and rate limits: the limits table, the holds that take their
slots, the tasks held back on a full key, and the wakes that send leases back to them
(conveyor.engine.limits says how a lease uses each).

The transaction holds the only write lock, so no key needs a lock of its own: whatever a lease
counts stays true until it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from conveyor.core.limiting import Limit
from conveyor.core.models import Task
from conveyor.core.types import TaskId
from conveyor.store import codec
from conveyor.store.base import Hold, chunked

_LIMITS = ", ".join(codec.LIMIT_COLUMNS)
_TASKS = ", ".join(codec.TASK_COLUMNS)
_KEYS_PER_QUERY = 500
_LIVE = "(t.state = 'running' AND t.attempts = h.token)"
"""A hold takes a slot while its task is running the attempt that took it."""


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SQLiteLimits:
    _conn: sqlite3.Connection

    def put_limit(self, limit: Limit, now: datetime) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO limits ({_LIMITS}) VALUES (?, ?, ?, ?, ?)",
            codec.limit_row(limit, now),
        )

    def get_limits(self, names: Collection[str]) -> dict[str, Limit]:
        found: dict[str, Limit] = {}
        for chunk in chunked(sorted(names), _KEYS_PER_QUERY):
            rows = self._conn.execute(
                f"SELECT {_LIMITS} FROM limits WHERE name IN ({_marks(len(chunk))})", chunk
            )
            found.update((row[0], codec.limit_from_row(row)) for row in rows)
        return found

    def list_limits(self) -> list[Limit]:
        rows = self._conn.execute(f"SELECT {_LIMITS} FROM limits ORDER BY name")
        return [codec.limit_from_row(row) for row in rows]

    def delete_limit(self, name: str) -> bool:
        return self._conn.execute("DELETE FROM limits WHERE name = ?", (name,)).rowcount > 0

    def lock_limit_keys(self, keys: Collection[str]) -> set[str]:
        return set(keys)

    def limit_holds(self, keys: Collection[str]) -> list[Hold]:
        holds: list[Hold] = []
        for chunk in chunked(sorted(keys), _KEYS_PER_QUERY):
            rows = self._conn.execute(
                f"SELECT h.key, h.task_id, h.token, h.started_at, coalesce({_LIVE}, 0) "
                "FROM limit_holds h LEFT JOIN tasks t ON t.id = h.task_id "
                f"WHERE h.key IN ({_marks(len(chunk))})",
                chunk,
            )
            holds.extend(
                Hold(key, task_id, token, datetime.fromtimestamp(at, UTC), bool(live))
                for key, task_id, token, at, live in rows
            )
        holds.sort(key=lambda hold: hold.started_at)
        return holds

    def insert_limit_holds(self, holds: Sequence[Hold]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO limit_holds (key, task_id, token, started_at) "
            "VALUES (?, ?, ?, ?)",
            [(h.key, h.task_id, h.token, h.started_at.timestamp()) for h in holds],
        )

    def delete_limit_holds(self, holds: Sequence[Hold]) -> None:
        self._conn.executemany(
            "DELETE FROM limit_holds WHERE key = ? AND task_id = ? AND token = ?",
            [(h.key, h.task_id, h.token) for h in holds],
        )

    def sweep_limit_holds(self, now: datetime, limit: int) -> int:
        # The key's limit is the text before its first ':' (conveyor.core.limiting.limit_name).
        return self._conn.execute(
            "DELETE FROM limit_holds WHERE (key, task_id, token) IN ("
            "  SELECT h.key, h.task_id, h.token FROM limit_holds h"
            "  LEFT JOIN tasks t ON t.id = h.task_id"
            "  LEFT JOIN limits l ON l.name = CASE WHEN instr(h.key, ':') > 0"
            "    THEN substr(h.key, 1, instr(h.key, ':') - 1) ELSE h.key END"
            f"  WHERE NOT coalesce({_LIVE}, 0)"
            "  AND h.started_at <= ? - CASE WHEN l.rate IS NULL THEN 0 ELSE l.per_s END"
            "  LIMIT ?)",
            (now.timestamp(), limit),
        ).rowcount

    def hold_tasks(self, held: Sequence[tuple[TaskId, str]]) -> None:
        self._conn.executemany(
            "UPDATE tasks SET held_on = ? WHERE id = ?", [(key, task_id) for task_id, key in held]
        )

    def held_candidates(self, key: str, queue: str, limit: int) -> list[Task]:
        rows = self._conn.execute(
            f"SELECT {_TASKS} FROM tasks INDEXED BY tasks_held "
            "WHERE state = 'queued' AND held_on = ? AND queue = ? "
            "ORDER BY priority DESC, seq LIMIT ?",
            (key, queue, limit),
        )
        return [codec.task_from_row(row) for row in rows]

    def held_keys(self, after: str | None, limit: int) -> list[str]:
        # One index probe per key (a loose index scan), however many tasks each key holds.
        keys: list[str] = []
        last = after or ""  # every key is longer: a limit's name has a character at least
        while len(keys) < limit:
            (key,) = self._conn.execute(
                "SELECT min(held_on) FROM tasks INDEXED BY tasks_held "
                "WHERE state = 'queued' AND held_on > ?",
                (last,),
            ).fetchone()
            if key is None:
                break
            keys.append(key)
            last = key
        return keys

    def held_queues(self, key: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT queue FROM tasks INDEXED BY tasks_held "
            "WHERE state = 'queued' AND held_on = ?",
            (key,),
        )
        return [row[0] for row in rows]

    def held_counts(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT held_on, count(*) FROM tasks INDEXED BY tasks_held "
            "WHERE state = 'queued' AND held_on IS NOT NULL GROUP BY held_on"
        )
        return {key: n for key, n in rows}

    def live_hold_counts(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT h.key, count(*) FROM limit_holds h JOIN tasks t ON t.id = h.task_id "
            f"WHERE {_LIVE} GROUP BY h.key"
        )
        return {key: n for key, n in rows}

    def held_ahead(self, key: str, priority: int, seq: int) -> int:
        (count,) = self._conn.execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_held "
            "WHERE state = 'queued' AND held_on = ? "
            "AND (priority > ? OR (priority = ? AND seq < ?))",
            (key, priority, priority, seq),
        ).fetchone()
        return int(count)

    def wake_limit_keys(self, keys: Collection[str], at: datetime) -> None:
        self._conn.executemany(
            "INSERT INTO limit_wakes (key, at) VALUES (?, ?)",
            [(key, at.timestamp()) for key in sorted(keys)],
        )

    def ensure_limit_wake(self, key: str, at: datetime) -> None:
        self._conn.execute(
            "INSERT INTO limit_wakes (key, at) SELECT ?1, ?2 WHERE NOT EXISTS "
            "(SELECT 1 FROM limit_wakes WHERE key = ?1 AND at <= ?2)",
            (key, at.timestamp()),
        )

    def due_limit_wakes(self, now: datetime, keys: int) -> list[tuple[int, str]]:
        rows = self._conn.execute(
            "SELECT id, key FROM limit_wakes WHERE at <= ?1 AND key IN "
            "(SELECT key FROM limit_wakes WHERE at <= ?1 ORDER BY at LIMIT ?2) ORDER BY at",
            (now.timestamp(), keys),
        )
        return [(wake_id, key) for wake_id, key in rows]

    def delete_limit_wakes(self, ids: Collection[int]) -> None:
        for chunk in chunked(sorted(ids), _KEYS_PER_QUERY):
            self._conn.execute(f"DELETE FROM limit_wakes WHERE id IN ({_marks(len(chunk))})", chunk)

    def next_limit_wake(self, after: datetime) -> datetime | None:
        (at,) = self._conn.execute(
            "SELECT min(at) FROM limit_wakes WHERE at > ?", (after.timestamp(),)
        ).fetchone()
        return codec.from_epoch(at)
