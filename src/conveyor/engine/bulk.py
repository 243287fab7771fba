"""Bulk actions: retry, cancel or delete every task a filter selects, a chunk at a time.

A bulk action is a durable record (StoreTx.insert_bulk): the action, the filter, `upto_seq` (the
newest task when it was asked: tasks submitted later are never touched), a cursor and counts.
It runs as chunks, each its own short transaction, so that a million tasks never make one long
transaction nor hold the database from the other writers for more than a chunk:

1. find the next `chunk_size` tasks after the cursor that match the filter (a read, which
   locks nothing: on SQLite it does not even hold the writers back);
2. in one transaction: lock the record, lock those of the tasks that still match, apply the
   single-task rule to them (`engine.actions`: the same code as `cancel`, `retry`, `delete`),
   and move the cursor and the counts.

What a chunk changed and the record of it commit together, so after a crash the next chunk
starts exactly after the last one that committed: no task is changed twice, none is missed.
Asking again with the same filter is safe as well: a task already dealt with no longer matches
(a retried task is not failed any more), or is skipped by the rule.

Chunks are run by a runner (a server's background job, or `run_bulk` in-process) that claims the
record for CLAIM_S at each chunk; the timers of every server look for records whose claim has
lapsed (`unclaimed_bulks`) and run them, so a crashed server's actions finish elsewhere, or on
it once it is back. Two runners on one record would be harmless: its lock orders their chunks,
and a chunk whose cursor moved meanwhile does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.models import Task
from conveyor.core.states import Reason, TaskState
from conveyor.engine.actions import UserActions
from conveyor.engine.events import Changes
from conveyor.errors import ConflictError, DuplicateKeyError, InvalidSpecError, NotFoundError
from conveyor.store.base import BulkRecord, StoreTx, TaskFilter

log = logging.getLogger(__name__)

CLAIM_S = 10.0
"""How long a runner's claim on a bulk action lasts; each chunk renews it."""
DEFAULT_CHUNK = 500
MAX_CHUNK = 5000
SAMPLE = 20
"""Tasks a dry run shows of those the action would change."""


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """What a bulk action would do, counted now: the record it would start with, the matching
    tasks by state, and a few of those it would change (newest first)."""

    record: BulkRecord
    by_state: dict[TaskState, int]
    sample: list[Task]


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed or timed-out tasks with one error message (`""`: none); `error` None holds those
    that failed because a dependency did (they come back when it is retried)."""

    error: str | None
    count: int
    last_finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailureGroups:
    groups: list[FailureGroup]
    scanned: int
    """Failed tasks looked at: the newest `window` of them."""
    complete: bool
    """False when there are more failed tasks than were looked at."""


class BulkActions(UserActions):
    def plan_bulk(
        self,
        action: BulkAction,
        where: TaskFilter,
        *,
        key: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> BulkPlan:
        """What `action` on the tasks `where` selects would do (a dry run): changes nothing."""
        _check(where, chunk_size)
        may = action.may_change(where.states)
        now = self.clock.now()
        with self.store.transaction(write=False) as tx:
            upto_seq = tx.last_seq()
            by_state = tx.count_by_state(where)
            sample = tx.list_tasks(replace(where, states=tuple(may)), None, SAMPLE) if may else []
        record = BulkRecord(
            id=self._new_id(),
            key=key,
            action=action,
            where=where,
            chunk_size=chunk_size,
            upto_seq=upto_seq,
            total=sum(by_state.values()),
            estimate=sum(n for state, n in by_state.items() if state in may),
            created_at=now,
            updated_at=now,
        )
        return BulkPlan(record, by_state, sample)

    def start_bulk(
        self,
        action: BulkAction,
        where: TaskFilter,
        *,
        key: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> tuple[BulkRecord, bool]:
        """Store a bulk action for the runners to run; returns it, and False if `key` named one
        asked before (that one is returned, as it is now). Raises ConflictError if that one was
        a different action or filter."""
        if key is not None:
            with self.store.transaction(write=False) as tx:
                found = tx.find_bulk(key)
            if found is not None:
                return _same(found, action, where), False
        plan = self.plan_bulk(action, where, key=key, chunk_size=chunk_size)
        try:
            with self.store.transaction() as tx:
                found = tx.find_bulk(key) if key is not None else None
                if found is not None:
                    return _same(found, action, where), False
                tx.insert_bulk(plan.record)
        except DuplicateKeyError:  # another server stored the same key meanwhile
            return self.start_bulk(action, where, key=key, chunk_size=chunk_size)
        log.info(
            "bulk action started",
            extra={"bulk": plan.record.id, "action": action.value, "tasks": plan.record.total},
        )
        return plan.record, True

    def bulk(self, bulk_id: str) -> BulkRecord:
        with self.store.transaction(write=False) as tx:
            found = tx.get_bulk(bulk_id)
        if found is None:
            raise NotFoundError(f"no bulk action {bulk_id}")
        return found

    def run_bulk_chunk(
        self, bulk_id: str, runner: str, *, take_over: bool = False
    ) -> tuple[BulkRecord, bool]:
        """Run the next chunk of a bulk action, if `runner` holds its claim or may take it (no
        claim, a lapsed one, or `take_over`). Returns the record, and whether `runner` should
        go on with the next chunk (False once it is done, or while another runner holds it)."""
        now = self.clock.now()
        with self.store.transaction(write=False) as tx:
            seen = tx.get_bulk(bulk_id)
            if seen is None:
                raise NotFoundError(f"no bulk action {bulk_id}")
            if seen.state is BulkState.DONE or not _may_run(seen, runner, now, take_over):
                return seen, False
            candidates = tx.bulk_candidates(seen.where, seen.cursor, seen.upto_seq, seen.chunk_size)
        changes = Changes()
        with self.store.transaction() as tx:
            record = tx.get_bulk(bulk_id, for_update=True)
            if record is None:
                raise NotFoundError(f"no bulk action {bulk_id}")
            if record.state is BulkState.DONE or not _may_run(record, runner, now, take_over):
                return record, False
            if record.cursor != seen.cursor:  # another runner's chunk came first: look again
                return record, True
            self._chunk(tx, record, candidates, runner, now, changes)
            tx.update_bulk(record)
        self.events.publish(changes)
        return record, record.state is BulkState.RUNNING

    def _chunk(
        self,
        tx: StoreTx,
        record: BulkRecord,
        candidates: list[tuple[int, str]],
        runner: str,
        now: datetime,
        changes: Changes,
    ) -> None:
        tasks = tx.lock_matching([task_id for _, task_id in candidates], record.where)
        if record.action is BulkAction.RETRY:
            refused = self._retry(tx, tasks, now, changes)
        elif record.action is BulkAction.CANCEL:
            refused = self._cancel(tx, tasks, now, changes)
        else:
            refused = self._delete(tx, tasks)
        record.matched += len(tasks)
        record.changed += len(tasks) - len(refused)
        record.skipped += len(refused)
        record.chunks += 1
        record.updated_at = now
        record.error = None
        if len(candidates) < record.chunk_size:  # nothing matches beyond them
            record.cursor = record.upto_seq
            record.state = BulkState.DONE
            record.finished_at = now
            record.runner = record.runner_until = None
            log.info(
                "bulk action done",
                extra={"bulk": record.id, "changed": record.changed, "skipped": record.skipped},
            )
        else:
            record.cursor = candidates[-1][0]
            record.runner = runner
            record.runner_until = now + timedelta(seconds=CLAIM_S)

    def run_bulk(
        self,
        bulk_id: str,
        runner: str = "in-process",
        *,
        max_chunks: int | None = None,
        between: Callable[[BulkRecord], None] | None = None,
    ) -> BulkRecord:
        """Run a bulk action's chunks here until it is done (or `max_chunks` have run), taking
        it over from whoever held it; `between` is called after each chunk."""
        take_over = True
        ran = 0
        while max_chunks is None or ran < max_chunks:
            record, more = self.run_bulk_chunk(bulk_id, runner, take_over=take_over)
            take_over = False
            ran += 1
            if between is not None:
                between(record)
            if not more:
                return record
        return self.bulk(bulk_id)

    def release_bulk(self, bulk_id: str, runner: str) -> None:
        """Give up `runner`'s claim now (a server stopping), so that the timers of any server
        take the action up at their next pass."""
        with self.store.transaction() as tx:
            record = tx.get_bulk(bulk_id, for_update=True)
            if record is not None and record.state is BulkState.RUNNING and record.runner == runner:
                record.runner = record.runner_until = None
                tx.update_bulk(record)

    def bulk_failed(self, bulk_id: str, error: str) -> None:
        """Record why a chunk failed; the action is tried again once CLAIM_S have passed."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            record = tx.get_bulk(bulk_id, for_update=True)
            if record is not None and record.state is BulkState.RUNNING:
                record.error = error
                record.updated_at = now
                record.runner_until = now + timedelta(seconds=CLAIM_S)
                tx.update_bulk(record)

    def unclaimed_bulks(self, limit: int = 100) -> list[str]:
        """Bulk actions still to run whose runner's claim has lapsed: the timers take them up."""
        with self.store.transaction(write=False) as tx:
            return tx.unclaimed_bulks(self.clock.now(), limit)

    def failure_groups(self, *, window: int = 10_000, limit: int = 50) -> FailureGroups:
        """The newest `window` failed or timed-out tasks by error message, the largest groups
        first; those failed because a dependency did form one group (error None)."""
        with self.store.transaction(write=False) as tx:
            failures = tx.recent_failures(window)
        counts: dict[str | None, tuple[int, datetime | None]] = {}
        for f in failures:
            key = None if f.reason is Reason.DEPENDENCY_FAILED else (f.error or "")
            count, last = counts.get(key, (0, None))
            if f.finished_at is not None and (last is None or f.finished_at > last):
                last = f.finished_at
            counts[key] = (count + 1, last)
        groups = [FailureGroup(error, count, last) for error, (count, last) in counts.items()]
        groups.sort(key=lambda g: (-g.count, -(g.last_finished_at or _EPOCH).timestamp()))
        return FailureGroups(groups[:limit], len(failures), complete=len(failures) < window)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _check(where: TaskFilter, chunk_size: int) -> None:
    if where == TaskFilter():
        raise InvalidSpecError(
            "name at least one criterion (a state, a queue, ids, ...): a bulk action never "
            "selects every task by default",
            field="filter",
        )
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise InvalidSpecError(f"must be between 1 and {MAX_CHUNK}", field="chunk_size")


def _may_run(record: BulkRecord, runner: str, now: datetime, take_over: bool) -> bool:
    return (
        take_over
        or record.runner in (None, runner)
        or record.runner_until is None
        or record.runner_until <= now
    )


def _same(found: BulkRecord, action: BulkAction, where: TaskFilter) -> BulkRecord:
    if found.action is not action or _normal(found.where) != _normal(where):
        raise ConflictError(
            f"key {found.key!r} was used for another bulk action ({found.action.value} "
            f"{found.id}); use a new key"
        )
    return found


def _normal(where: TaskFilter) -> tuple[object, ...]:
    """The filter as stored: states in order, times to the microsecond."""
    times = (where.created_after, where.created_before, where.finished_after, where.finished_before)
    return (
        tuple(sorted(where.states)), where.queue, where.name, where.handler, where.labels,
        where.reason, where.error, where.ids,
        *(None if t is None else round(t.timestamp(), 6) for t in times),
    )  # fmt: skip
