"""Placement in SQL: the candidate query's test of what a worker can run, in SQL (conveyor.core.capabilities).

A lease reads ready tasks a page at a time, up to a bound per queue (engine/leasing.py): were
the tasks a worker cannot run (a crowd of `shell` tasks, say, on a worker without --allow shell)
read and dropped in Python, enough of them at the head of a queue would hide every task behind
them. So the candidate query leaves them out itself, before the LIMIT, and the database skips
them without decoding a row. The engine applies the same test again (core.capabilities.runs):
this one is the fast path of that rule, never a second rule.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.capabilities import ANY_MODULE
from conveyor.core.types import WorkerId
from conveyor.store.base import RunnableBy, WaitingShape
from conveyor.store.codec import dump_json, load_json

if TYPE_CHECKING:
    from conveyor.store.postgres_batch import BatchedConnection


@dataclass(frozen=True, slots=True)
class _Dialect:
    mark: str
    has_colon: str
    labels_within: str
    """The task's required labels are all among the worker's (one placeholder: its labels)."""
    true: str


SQLITE = _Dialect(
    "?",
    "instr(handler, ':') > 0",
    "NOT EXISTS (SELECT 1 FROM json_each(require_labels) AS r "
    "WHERE json_extract(?, '$.' || json_quote(r.key)) IS NOT r.value)",
    "1",
)
POSTGRES = _Dialect("%s", "strpos(handler, ':') > 0", "require_labels::jsonb <@ %s::jsonb", "true")


def runnable_clause(by: RunnableBy | None, dialect: _Dialect) -> tuple[str, list[Any]]:
    """` AND ...` to add to a candidate query's WHERE, and its parameters ('' for None)."""
    if by is None:
        return "", []
    mark = dialect.mark
    sql: list[str] = []
    params: list[Any] = []
    caps = by.capabilities
    if caps is not None:
        options: list[str] = []
        if caps.handlers:
            options.append(f"handler IN ({', '.join([mark] * len(caps.handlers))})")
            params += caps.handlers
        if ANY_MODULE in caps.modules:
            options.append(dialect.has_colon)
        else:
            for prefix in caps.modules:
                # `prefix:` or `prefix.`: the module itself or one under it, never `prefixx`.
                options.append(f"substr(handler, 1, {len(prefix) + 1}) IN ({mark}, {mark})")
                params += [f"{prefix}:", f"{prefix}."]
        sql.append(f"({' OR '.join(options)})" if options else "1 = 0")
    if by.labels:
        # CASE, not OR: most tasks require nothing, and then the test of labels is not made.
        sql.append(
            f"CASE WHEN require_labels = '{{}}' THEN {dialect.true} "
            f"ELSE {dialect.labels_within} END"
        )
        params.append(dump_json(dict(by.labels)))
    else:
        sql.append("require_labels = '{}'")
    return "".join(f" AND {part}" for part in sql), params


# ---- the reads that explain placement (the why answer, the unschedulable count) --------------

_RUNNING_COUNTS = (
    "SELECT worker_id, count(*) FROM tasks WHERE state = 'running' AND worker_id IS NOT NULL "
    "GROUP BY worker_id"
)
_WAITING_SHAPES = (
    "SELECT queue, handler, resources, require_labels, count(*) FROM tasks "
    "WHERE state IN ('pending', 'queued') GROUP BY queue, handler, resources, require_labels"
)


def _ahead(mark: str) -> str:
    # Bounded: a count of a million queued tasks is not worth a second's scan.
    return (
        f"SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'queued' "
        f"AND held_on IS NULL AND queue = {mark} "
        f"AND (priority > {mark} OR (priority = {mark} AND seq < {mark})) LIMIT {mark}) AS a"
    )


def _shapes(rows: Any) -> list[WaitingShape]:
    return [
        WaitingShape(queue, handler, load_json(resources), load_json(require), int(count))
        for queue, handler, resources, require, count in rows
    ]


class SQLitePlacement:
    """SQLiteTx's part for placement reads."""

    _conn: sqlite3.Connection

    def running_counts(self) -> dict[WorkerId, int]:
        return dict(self._conn.execute(_RUNNING_COUNTS).fetchall())

    def queued_ahead(self, queue: str, priority: int, seq: int, cap: int) -> int:
        row = self._conn.execute(_ahead("?"), (queue, priority, priority, seq, cap)).fetchone()
        return int(row[0])

    def waiting_shapes(self) -> list[WaitingShape]:
        return _shapes(self._conn.execute(_WAITING_SHAPES).fetchall())


class PostgresPlacement:
    """PostgresTx's part for placement reads."""

    conn: BatchedConnection

    def running_counts(self) -> dict[WorkerId, int]:
        return {w: int(n) for w, n in self.conn.execute(_RUNNING_COUNTS).fetchall()}

    def queued_ahead(self, queue: str, priority: int, seq: int, cap: int) -> int:
        row = self.conn.execute(_ahead("%s"), (queue, priority, priority, seq, cap)).fetchone()
        return int(row[0]) if row else 0

    def waiting_shapes(self) -> list[WaitingShape]:
        return _shapes(self.conn.execute(_WAITING_SHAPES).fetchall())
