"""SQLiteTx's part for bulk actions and the failure view: counting and walking the tasks a
filter selects, and the bulk_actions table (conveyor.engine.bulk says how they are used).

Every query here reads a bounded number of rows per call, whatever the size of the table: a
walk goes in seq order through an index that is in seq order (the rowid, or (state, seq) one
state at a time), so that `LIMIT` stops the scan instead of sorting everything that matches.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from conveyor.core.models import Task
from conveyor.core.states import Reason, TaskState
from conveyor.core.types import TaskId
from conveyor.store import codec
from conveyor.store.base import BulkRecord, Failure, TaskFilter, chunked

_BULK_COLUMNS = ", ".join(codec.BULK_COLUMNS)
_IDS_PER_QUERY = 500  # with a filter's own parameters, well below SQLite's variable limit
FAILED_STATES = (TaskState.FAILED, TaskState.TIMED_OUT)


class SQLiteBulk:
    _conn: sqlite3.Connection

    def count_by_state(self, where: TaskFilter) -> dict[TaskState, int]:
        condition, params = codec.task_filter(where, None, codec.SQLITE)
        rows = self._conn.execute(
            f"SELECT state, count(*) FROM tasks WHERE {condition} GROUP BY state", params
        )
        return {TaskState(state): count for state, count in rows}

    def recent_failures(self, window: int) -> list[Failure]:
        newest = heapq.merge(
            *(
                self._conn.execute(
                    "SELECT seq, reason, error, finished_at FROM tasks INDEXED BY tasks_by_state "
                    "WHERE state = ? ORDER BY seq DESC LIMIT ?",
                    (state.value, window),
                ).fetchall()
                for state in FAILED_STATES
            ),
            key=lambda row: -row[0],
        )
        return [
            Failure(
                seq=seq,
                reason=Reason(reason) if reason else None,
                error=error,
                finished_at=codec.from_epoch(finished_at),
            )
            for seq, reason, error, finished_at in list(newest)[:window]
        ]

    def last_seq(self) -> int:
        (seq,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        return int(seq)

    def bulk_candidates(
        self, where: TaskFilter, after_seq: int, upto_seq: int, limit: int
    ) -> list[tuple[int, TaskId]]:
        if not where.states:
            return self._candidates(where, after_seq, upto_seq, limit, "NOT INDEXED")
        # One walk per state along (state, seq), merged: each stops after `limit` rows.
        walks = [
            self._candidates(
                replace(where, states=(state,)),
                after_seq,
                upto_seq,
                limit,
                "INDEXED BY tasks_by_state",
            )
            for state in sorted(where.states)
        ]
        return list(heapq.merge(*walks))[:limit]

    def _candidates(
        self, where: TaskFilter, after_seq: int, upto_seq: int, limit: int, index: str
    ) -> list[tuple[int, TaskId]]:
        condition, params = codec.task_filter(where, None, codec.SQLITE)
        rows = self._conn.execute(
            f"SELECT seq, id FROM tasks {index} WHERE seq > ? AND seq <= ? AND {condition} "
            "ORDER BY seq LIMIT ?",
            (after_seq, upto_seq, *params, limit),
        )
        return [(seq, task_id) for seq, task_id in rows]

    def lock_matching(self, ids: Collection[TaskId], where: TaskFilter) -> list[Task]:
        # The transaction holds the database's only write lock: reading is locking.
        condition, params = codec.task_filter(where, None, codec.SQLITE)
        found: list[Task] = []
        for chunk in chunked(sorted(ids), _IDS_PER_QUERY):
            marks = ", ".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT {', '.join(codec.TASK_COLUMNS)} FROM tasks "
                f"WHERE id IN ({marks}) AND {condition} ORDER BY id",
                (*chunk, *params),
            )
            found.extend(codec.task_from_row(row) for row in rows)
        return found

    def insert_bulk(self, record: BulkRecord) -> None:
        marks = ", ".join("?" * len(codec.BULK_COLUMNS))
        self._conn.execute(
            f"INSERT INTO bulk_actions ({_BULK_COLUMNS}) VALUES ({marks})", codec.bulk_row(record)
        )

    def get_bulk(self, bulk_id: str, *, for_update: bool = False) -> BulkRecord | None:
        return self._bulk("id = ?", (bulk_id,))

    def find_bulk(self, key: str) -> BulkRecord | None:
        return self._bulk("key = ?", (key,))

    def update_bulk(self, record: BulkRecord) -> None:
        row = codec.bulk_row(record)
        sets = ", ".join(f"{column} = ?" for column in codec.BULK_COLUMNS[1:])
        self._conn.execute(f"UPDATE bulk_actions SET {sets} WHERE id = ?", (*row[1:], row[0]))

    def unclaimed_bulks(self, now: datetime, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM bulk_actions "
            "WHERE state = 'running' AND (runner_until IS NULL OR runner_until < ?) "
            "ORDER BY created_at LIMIT ?",
            (now.timestamp(), limit),
        )
        return [bulk_id for (bulk_id,) in rows]

    def _bulk(self, where: str, params: Sequence[Any]) -> BulkRecord | None:
        row = self._conn.execute(
            f"SELECT {_BULK_COLUMNS} FROM bulk_actions WHERE {where}", params
        ).fetchone()
        return None if row is None else codec.bulk_from_row(row)
