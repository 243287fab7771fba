"""PostgresTx's part for concurrency and rate limits: the limits table, the holds that take their
slots, the tasks held back on a full key, and the wakes that send leases back to them
(conveyor.engine.limits says how a lease uses each).

Several servers lease at once, so a key is decided by one transaction at a time: a lease takes
the key's advisory lock (transaction-scoped) before it counts the key's holds, and a lease that
finds the lock taken passes the key's tasks over instead of waiting (as SKIP LOCKED passes rows
over), so that leases never wait on each other and cannot deadlock over keys.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from conveyor.core.limiting import Limit
from conveyor.core.models import Task
from conveyor.core.types import TaskId
from conveyor.store import codec
from conveyor.store.base import Hold
from conveyor.store.postgres_batch import BatchedConnection

_LIMITS = ", ".join(codec.LIMIT_COLUMNS)
_TASKS = ", ".join(codec.TASK_COLUMNS)
_KEY_LOCKS = 7_411_339
"""The first half of every limit key's advisory lock (the second is a hash of the key)."""
_LIVE = "(t.state = 'running' AND t.attempts = h.token)"
"""A hold takes a slot while its task is running the attempt that took it."""


def _limit_of(key: str) -> str:
    """Columns: the limit of the key in column `key` (null if none), and whether this
    transaction now holds the key's lock, taken without waiting (only for a key with a limit)."""
    return (
        f"{', '.join('l.' + c for c in codec.LIMIT_COLUMNS)}, "
        "CASE WHEN l.name IS NULL THEN false "
        f"ELSE pg_try_advisory_xact_lock(%(locks)s, hashtext({key})) END"
    )


def lease_wakes_query(now: datetime, keys: int) -> tuple[str, dict[str, Any]]:
    """PostgresLimits.lease_wakes's statement (PostgresTx.read_ahead makes it too)."""
    return (
        f"SELECT w.id, w.key, {_limit_of('w.key')} FROM limit_wakes w "
        "LEFT JOIN limits l ON l.name = split_part(w.key, ':', 1) "
        "WHERE w.at <= %(now)s AND w.key IN "
        "(SELECT key FROM limit_wakes WHERE at <= %(now)s ORDER BY at LIMIT %(keys)s) "
        "ORDER BY w.at",
        {"now": now.timestamp(), "keys": keys, "locks": _KEY_LOCKS},
    )


def _limits_and_locks(rows: Iterable[Sequence[Any]]) -> tuple[dict[str, Limit], set[str]]:
    limits: dict[str, Limit] = {}
    locked: set[str] = set()
    for key, *limit, is_locked in rows:
        if limit[0] is not None:
            limits[limit[0]] = codec.limit_from_row(limit)
            if is_locked:
                locked.add(key)
    return limits, locked


class PostgresLimits:
    conn: BatchedConnection

    def put_limit(self, limit: Limit, now: datetime) -> None:
        self.conn.execute(
            f"INSERT INTO limits ({_LIMITS}) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) "
            "DO UPDATE SET concurrency = EXCLUDED.concurrency, rate = EXCLUDED.rate, "
            "per_s = EXCLUDED.per_s, updated_at = EXCLUDED.updated_at",
            codec.limit_row(limit, now),
        )

    def get_limits(self, names: Collection[str]) -> dict[str, Limit]:
        if not names:
            return {}
        rows = self.conn.execute(
            f"SELECT {_LIMITS} FROM limits WHERE name = ANY(%s)", (sorted(names),)
        )
        return {row[0]: codec.limit_from_row(row) for row in rows}

    def list_limits(self) -> list[Limit]:
        rows = self.conn.execute(f"SELECT {_LIMITS} FROM limits ORDER BY name")
        return [codec.limit_from_row(row) for row in rows]

    def delete_limit(self, name: str) -> bool:
        return self.conn.execute("DELETE FROM limits WHERE name = %s", (name,)).rowcount > 0

    def limits_for_lease(self, keys: Collection[str]) -> tuple[dict[str, Limit], set[str]]:
        if not keys:
            return {}, set()
        rows = self.conn.execute(
            f"SELECT k, {_limit_of('k')} FROM unnest(%(keys)s::text[]) AS k "
            "LEFT JOIN limits l ON l.name = split_part(k, ':', 1)",
            {"keys": sorted(keys), "locks": _KEY_LOCKS},
        )
        return _limits_and_locks(rows)

    def lease_wakes(
        self, now: datetime, keys: int
    ) -> tuple[list[tuple[int, str]], dict[str, Limit], set[str]]:
        rows = self.conn.execute(*lease_wakes_query(now, keys)).fetchall()
        wakes = [(int(row[0]), row[1]) for row in rows]
        return (wakes, *_limits_and_locks(row[1:] for row in rows))

    def limit_usage(self, since: Mapping[str, datetime]) -> dict[str, tuple[int, int]]:
        if not since:
            return {}
        pairs = sorted(since.items())
        rows = self.conn.execute(
            "SELECT k.key, "
            "(SELECT count(*) FROM limit_holds h JOIN tasks t ON t.id = h.task_id "
            f" WHERE h.key = k.key AND {_LIVE}), "
            "(SELECT count(*) FROM limit_starts s WHERE s.key = k.key "
            " AND s.started_at > k.since) "
            "FROM unnest(%s::text[], %s::float8[]) AS k(key, since)",
            ([key for key, _ in pairs], [when.timestamp() for _, when in pairs]),
        )
        return {key: (int(running), int(started)) for key, running, started in rows}

    def nth_limit_start(self, key: str, since: datetime, offset: int) -> datetime | None:
        row = self.conn.execute(
            "SELECT started_at FROM limit_starts WHERE key = %s AND started_at > %s "
            "ORDER BY started_at LIMIT 1 OFFSET %s",
            (key, since.timestamp(), offset),
        ).fetchone()
        return None if row is None else codec.from_epoch(row[0])

    def take_limit_slots(
        self, holds: Sequence[Hold], starts: Sequence[tuple[str, datetime]]
    ) -> None:
        if holds or starts:
            self.conn.defer(
                "WITH held AS (INSERT INTO limit_holds (key, task_id, token, started_at) "
                "  SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::float8[]) "
                "  ON CONFLICT DO NOTHING) "
                "INSERT INTO limit_starts (key, started_at) "
                "SELECT * FROM unnest(%s::text[], %s::float8[])",
                (
                    [h.key for h in holds],
                    [h.task_id for h in holds],
                    [h.token for h in holds],
                    [h.started_at.timestamp() for h in holds],
                    [key for key, _ in starts],
                    [at.timestamp() for _, at in starts],
                ),
            )

    def delete_limit_holds(self, holds: Sequence[tuple[str, TaskId, int]]) -> None:
        if holds:
            self.conn.defer(
                "DELETE FROM limit_holds WHERE (key, task_id, token) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[]))",
                ([h[0] for h in holds], [h[1] for h in holds], [h[2] for h in holds]),
            )

    def sweep_limit_holds(self, now: datetime, limit: int) -> int:
        holds = self.conn.execute(
            "DELETE FROM limit_holds WHERE (key, task_id, token) IN ("
            "  SELECT h.key, h.task_id, h.token FROM limit_holds h"
            "  LEFT JOIN tasks t ON t.id = h.task_id"
            f"  WHERE NOT coalesce({_LIVE}, false) LIMIT %s)",
            (limit,),
        ).rowcount
        # The key's limit is the text before its first ':' (conveyor.core.limiting.limit_name).
        starts = self.conn.execute(
            "DELETE FROM limit_starts WHERE id IN ("
            "  SELECT s.id FROM limit_starts s"
            "  LEFT JOIN limits l ON l.name = split_part(s.key, ':', 1)"
            "  WHERE s.started_at <= %s - coalesce(CASE WHEN l.rate IS NULL THEN 0 ELSE l.per_s END, 0)"
            "  LIMIT %s)",
            (now.timestamp(), limit),
        ).rowcount
        return holds + starts

    def hold_tasks(self, held: Sequence[tuple[TaskId, str]]) -> None:
        if held:
            self.conn.defer(
                "UPDATE tasks SET held_on = h.key FROM unnest(%s::text[], %s::text[]) "
                "AS h(id, key) WHERE tasks.id = h.id",
                ([task_id for task_id, _ in held], [key for _, key in held]),
            )

    def ready_limited(
        self, name: str, after_seq: int, limit: int
    ) -> list[tuple[int, TaskId, str, list[str]]]:
        # `"name"` or `"name:...` in the JSON list; `_` in a name matches any character here,
        # which only lets more through.
        rows = self.conn.execute(
            "SELECT seq, id, queue, limits FROM tasks WHERE state = 'queued' AND held_on IS NULL "
            "AND limits <> '[]' AND seq > %s AND limits LIKE %s "
            "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (after_seq, f'%"{name}%', limit),
        ).fetchall()
        return [(seq, task_id, queue, codec.load_json(keys)) for seq, task_id, queue, keys in rows]

    def held_candidates(self, key: str, queue: str, limit: int) -> list[Task]:
        rows = self.conn.execute(
            f"SELECT {_TASKS} FROM tasks WHERE state = 'queued' AND held_on = %s AND queue = %s "
            "ORDER BY priority DESC, seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (key, queue, limit),
        ).fetchall()
        return [codec.task_from_row(row) for row in rows]

    def held_keys(self, after: str | None, limit: int) -> list[str]:
        # A loose index scan: one probe of tasks_held per key, however many tasks each holds.
        rows = self.conn.execute(
            "WITH RECURSIVE k(key, n) AS ("
            "  (SELECT held_on, 1 FROM tasks WHERE state = 'queued' AND held_on > %s"
            "   ORDER BY held_on LIMIT 1)"
            "  UNION ALL"
            "  SELECT (SELECT held_on FROM tasks WHERE state = 'queued' AND held_on > k.key"
            "          ORDER BY held_on LIMIT 1), k.n + 1"
            "  FROM k WHERE k.key IS NOT NULL AND k.n < %s"
            ") SELECT key FROM k WHERE key IS NOT NULL",
            (after or "", limit),
        )
        return [row[0] for row in rows]

    def held_queues(self, key: str) -> list[str]:
        # A loose index scan: one probe of tasks_held per queue, however long the line.
        rows = self.conn.execute(
            "WITH RECURSIVE q(queue) AS ("
            "  (SELECT queue FROM tasks WHERE state = 'queued' AND held_on = %(key)s"
            "   ORDER BY queue LIMIT 1)"
            "  UNION ALL"
            "  SELECT (SELECT queue FROM tasks WHERE state = 'queued' AND held_on = %(key)s"
            "          AND queue > q.queue ORDER BY queue LIMIT 1)"
            "  FROM q WHERE q.queue IS NOT NULL"
            ") SELECT queue FROM q WHERE queue IS NOT NULL",
            {"key": key},
        )
        return [row[0] for row in rows]

    def held_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT held_on, count(*) FROM tasks WHERE state = 'queued' AND held_on IS NOT NULL "
            "GROUP BY held_on"
        )
        return {key: int(n) for key, n in rows}

    def live_hold_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT h.key, count(*) FROM limit_holds h JOIN tasks t ON t.id = h.task_id "
            f"WHERE {_LIVE} GROUP BY h.key"
        )
        return {key: int(n) for key, n in rows}

    def held_ahead(self, key: str, priority: int, seq: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE state = 'queued' AND held_on = %s "
            "AND (priority > %s OR (priority = %s AND seq < %s))",
            (key, priority, priority, seq),
        ).fetchone()
        return int(row[0]) if row else 0

    def wake_limit_keys(self, keys: Collection[str], at: datetime) -> None:
        if keys:
            self.conn.defer(
                "INSERT INTO limit_wakes (key, at) SELECT k, %s FROM unnest(%s::text[]) AS k",
                (at.timestamp(), sorted(keys)),
            )

    def ensure_limit_wake(self, key: str, at: datetime) -> None:
        self.conn.defer(
            "INSERT INTO limit_wakes (key, at) SELECT %(key)s, %(at)s WHERE NOT EXISTS "
            "(SELECT 1 FROM limit_wakes WHERE key = %(key)s AND at <= %(at)s)",
            {"key": key, "at": at.timestamp()},
        )

    def due_limit_wakes(self, now: datetime, keys: int) -> list[tuple[int, str]]:
        rows = self.conn.execute(
            "SELECT id, key FROM limit_wakes WHERE at <= %(now)s AND key IN "
            "(SELECT key FROM limit_wakes WHERE at <= %(now)s ORDER BY at LIMIT %(keys)s) "
            "ORDER BY at",
            {"now": now.timestamp(), "keys": keys},
        )
        return [(int(wake_id), key) for wake_id, key in rows]

    def delete_limit_wakes(self, ids: Collection[int]) -> None:
        if ids:
            self.conn.defer("DELETE FROM limit_wakes WHERE id = ANY(%s)", (sorted(ids),))

    def next_limit_wake(self, after: datetime) -> datetime | None:
        row = self.conn.execute(
            "SELECT min(at) FROM limit_wakes WHERE at > %s", (after.timestamp(),)
        ).fetchone()
        return codec.from_epoch(row[0] if row else None)
