"""PostgresTx's part for bulk actions and the failure view: counting and walking the tasks a
filter selects, and the bulk_actions table (conveyor.engine.bulk says how they are used).

A walk goes in seq order one state at a time, along the (state, seq) index, so that `LIMIT`
stops each scan; `lock_matching` locks in id order, as every other lock of tasks does, so that a
chunk and a report or a lease touching the same tasks cannot deadlock.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from conveyor.core.models import Task
from conveyor.core.states import Reason, TaskState
from conveyor.core.types import TaskId
from conveyor.store import codec
from conveyor.store.base import BulkRecord, Failure, TaskFilter
from conveyor.store.postgres_batch import BatchedConnection

_BULK_COLUMNS = ", ".join(codec.BULK_COLUMNS)
FAILED_STATES = (TaskState.FAILED, TaskState.TIMED_OUT)


class PostgresBulk:
    conn: BatchedConnection

    def count_by_state(self, where: TaskFilter) -> dict[TaskState, int]:
        condition, params = codec.task_filter(where, None, codec.POSTGRES)
        rows = self.conn.execute(
            f"SELECT state, count(*) FROM tasks WHERE {condition} GROUP BY state", params
        )
        return {TaskState(state): int(count) for state, count in rows}

    def recent_failures(self, window: int) -> list[Failure]:
        newest = heapq.merge(
            *(
                self.conn.execute(
                    "SELECT seq, reason, error, finished_at FROM tasks WHERE state = %s "
                    "ORDER BY seq DESC LIMIT %s",
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
        row = self.conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        return int(row[0]) if row else 0

    def bulk_candidates(
        self, where: TaskFilter, after_seq: int, upto_seq: int, limit: int
    ) -> list[tuple[int, TaskId]]:
        if not where.states:
            return self._candidates(where, after_seq, upto_seq, limit)
        walks = [
            self._candidates(replace(where, states=(state,)), after_seq, upto_seq, limit)
            for state in sorted(where.states)
        ]
        return list(heapq.merge(*walks))[:limit]

    def _candidates(
        self, where: TaskFilter, after_seq: int, upto_seq: int, limit: int
    ) -> list[tuple[int, TaskId]]:
        condition, params = codec.task_filter(where, None, codec.POSTGRES)
        rows = self.conn.execute(
            f"SELECT seq, id FROM tasks WHERE seq > %s AND seq <= %s AND {condition} "
            "ORDER BY seq LIMIT %s",
            (after_seq, upto_seq, *params, limit),
        )
        return [(int(seq), task_id) for seq, task_id in rows]

    def lock_matching(self, ids: Collection[TaskId], where: TaskFilter) -> list[Task]:
        if not ids:
            return []
        condition, params = codec.task_filter(where, None, codec.POSTGRES)
        # Locked as they come out of the sort: in id order. READ COMMITTED re-checks the
        # condition on a row that another transaction changed while this one waited for it.
        rows = self.conn.execute(
            f"SELECT {', '.join(codec.TASK_COLUMNS)} FROM tasks "
            f"WHERE id = ANY(%s) AND {condition} ORDER BY id FOR UPDATE",
            (list(ids), *params),
        ).fetchall()
        return [codec.task_from_row(row) for row in rows]

    def insert_bulk(self, record: BulkRecord) -> None:
        marks = ", ".join(["%s"] * len(codec.BULK_COLUMNS))
        self.conn.execute(
            f"INSERT INTO bulk_actions ({_BULK_COLUMNS}) VALUES ({marks})", codec.bulk_row(record)
        )

    def get_bulk(self, bulk_id: str, *, for_update: bool = False) -> BulkRecord | None:
        return self._bulk("id = %s" + (" FOR UPDATE" if for_update else ""), (bulk_id,))

    def find_bulk(self, key: str) -> BulkRecord | None:
        return self._bulk("key = %s", (key,))

    def update_bulk(self, record: BulkRecord) -> None:
        row = codec.bulk_row(record)
        sets = ", ".join(f"{column} = %s" for column in codec.BULK_COLUMNS[1:])
        self.conn.execute(f"UPDATE bulk_actions SET {sets} WHERE id = %s", (*row[1:], row[0]))

    def unclaimed_bulks(self, now: datetime, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM bulk_actions "
            "WHERE state = 'running' AND (runner_until IS NULL OR runner_until < %s) "
            "ORDER BY created_at LIMIT %s",
            (now.timestamp(), limit),
        )
        return [bulk_id for (bulk_id,) in rows]

    def _bulk(self, where: str, params: Sequence[Any]) -> BulkRecord | None:
        row = self.conn.execute(
            f"SELECT {_BULK_COLUMNS} FROM bulk_actions WHERE {where}", params
        ).fetchone()
        return None if row is None else codec.bulk_from_row(row)
