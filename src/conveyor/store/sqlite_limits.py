"""SQLiteTx's part for concurrency and rate limits: the limits table, the holds that take their
slots, the tasks held back on a full key, and the wakes that send leases back to them
(conveyor.engine.limits says how a lease uses each).

The transaction holds the only write lock, so no key needs a lock of its own: whatever a lease
counts stays true until it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from conveyor.core.limiting import Limit, limit_name
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

    def limits_for_lease(self, keys: Collection[str]) -> tuple[dict[str, Limit], set[str]]:
        limits = self.get_limits({limit_name(key) for key in keys})
        return limits, {key for key in keys if limit_name(key) in limits}

    def lease_wakes(
        self, now: datetime, keys: int
    ) -> tuple[list[tuple[int, str]], dict[str, Limit], set[str]]:
        wakes = self.due_limit_wakes(now, keys)
        return (wakes, *self.limits_for_lease({key for _, key in wakes}))

    def limit_usage(self, since: Mapping[str, datetime]) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        pairs = sorted(since.items())
        for start in range(0, len(pairs), _KEYS_PER_QUERY):
            chunk = pairs[start : start + _KEYS_PER_QUERY]
            values = ", ".join(["(?, ?)"] * len(chunk))
            rows = self._conn.execute(
                f"WITH k(key, since) AS (VALUES {values}) SELECT k.key, "
                "(SELECT count(*) FROM limit_holds h JOIN tasks t ON t.id = h.task_id "
                f" WHERE h.key = k.key AND {_LIVE}), "
                "(SELECT count(*) FROM limit_starts s WHERE s.key = k.key "
                " AND s.started_at > k.since) FROM k",
                [value for key, when in chunk for value in (key, when.timestamp())],
            )
            found.update((key, (running, started)) for key, running, started in rows)
        return found

    def nth_limit_start(self, key: str, since: datetime, offset: int) -> datetime | None:
        row = self._conn.execute(
            "SELECT started_at FROM limit_starts WHERE key = ? AND started_at > ? "
            "ORDER BY started_at LIMIT 1 OFFSET ?",
            (key, since.timestamp(), offset),
        ).fetchone()
        return None if row is None else codec.from_epoch(row[0])

    def take_limit_slots(
        self, holds: Sequence[Hold], starts: Sequence[tuple[str, datetime]]
    ) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO limit_holds (key, task_id, token, started_at) "
            "VALUES (?, ?, ?, ?)",
            [(h.key, h.task_id, h.token, h.started_at.timestamp()) for h in holds],
        )
        self._conn.executemany(
            "INSERT INTO limit_starts (key, started_at) VALUES (?, ?)",
            [(key, at.timestamp()) for key, at in starts],
        )

    def delete_limit_holds(self, holds: Sequence[tuple[str, TaskId, int]]) -> None:
        self._conn.executemany(
            "DELETE FROM limit_holds WHERE key = ? AND task_id = ? AND token = ?", holds
        )

    def sweep_limit_holds(self, now: datetime, limit: int) -> int:
        holds = self._conn.execute(
            "DELETE FROM limit_holds WHERE (key, task_id, token) IN ("
            "  SELECT h.key, h.task_id, h.token FROM limit_holds h"
            "  LEFT JOIN tasks t ON t.id = h.task_id"
            f"  WHERE NOT coalesce({_LIVE}, 0) LIMIT ?)",
            (limit,),
        ).rowcount
        # The key's limit is the text before its first ':' (conveyor.core.limiting.limit_name).
        starts = self._conn.execute(
            "DELETE FROM limit_starts WHERE id IN ("
            "  SELECT s.id FROM limit_starts s"
            "  LEFT JOIN limits l ON l.name = CASE WHEN instr(s.key, ':') > 0"
            "    THEN substr(s.key, 1, instr(s.key, ':') - 1) ELSE s.key END"
            "  WHERE s.started_at <= ? - coalesce(CASE WHEN l.rate IS NULL THEN 0 ELSE l.per_s END, 0)"
            "  LIMIT ?)",
            (now.timestamp(), limit),
        ).rowcount
        return holds + starts

    def hold_tasks(self, held: Sequence[tuple[TaskId, str]]) -> None:
        self._conn.executemany(
            "UPDATE tasks SET held_on = ? WHERE id = ?", [(key, task_id) for task_id, key in held]
        )

    def ready_limited(
        self, name: str, after_seq: int, limit: int
    ) -> list[tuple[int, TaskId, str, list[str]]]:
        # `"name"` or `"name:...` in the JSON list; `_` in a name matches any character here,
        # which only lets more through.
        rows = self._conn.execute(
            "SELECT seq, id, queue, limits FROM tasks INDEXED BY tasks_ready_limited "
            "WHERE state = 'queued' AND held_on IS NULL AND limits <> '[]' AND seq > ? "
            "AND limits LIKE ? ORDER BY seq LIMIT ?",
            (after_seq, f'%"{name}%', limit),
        )
        return [(seq, task_id, queue, codec.load_json(keys)) for seq, task_id, queue, keys in rows]

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
        # One index probe per queue, however many tasks the line holds.
        queues: list[str] = []
        while True:
            (queue,) = self._conn.execute(
                "SELECT min(queue) FROM tasks INDEXED BY tasks_held "
                "WHERE state = 'queued' AND held_on = ? AND queue > ?",
                (key, queues[-1] if queues else ""),
            ).fetchone()
            if queue is None:
                return queues
            queues.append(queue)

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
