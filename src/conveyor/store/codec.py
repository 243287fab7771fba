"""Records to database rows and back: shared by every SQL store, so both speak the same columns.

Times are stored as seconds since the epoch (float), JSON as compact text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.capabilities import Capabilities
from conveyor.core.limiting import Limit
from conveyor.core.models import Attempt, Task, Worker, WorkerState
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.schedules import Schedule, ScheduleSpec
from conveyor.core.spec import DEFAULT_RETRY_POLICY, RetryPolicy
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.core.types import JSON
from conveyor.store.base import BulkRecord, TaskFilter

TASK_COLUMNS = (
    "seq", "id", "name", "handler", "args", "kwargs", "queue", "priority", "state", "reason",
    "depends_on", "deps_left", "not_before", "timeout_s", "max_retries", "retries_used", "retry",
    "attempts", "deliveries", "resources", "key", "labels", "result", "error", "worker_id",
    "lease_expires_at", "created_at", "updated_at", "started_at", "finished_at", "has_refs",
    "require_labels", "prefer_labels", "limits", "held_on",
)  # fmt: skip
INSERT_COLUMNS = TASK_COLUMNS[1:]  # seq is assigned by the database
_LIMITS, _HELD_ON = TASK_COLUMNS.index("limits"), TASK_COLUMNS.index("held_on")
MUTABLE_COLUMNS = (
    "state", "reason", "deps_left", "not_before", "retries_used", "attempts", "deliveries",
    "result", "error", "worker_id", "lease_expires_at", "updated_at", "started_at", "finished_at",
    "held_on",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "task_id", "number", "worker_id", "started_at", "lease_expires_at", "finished_at", "outcome",
    "error", "traceback", "stdout_tail", "stderr_tail",
)  # fmt: skip
WORKER_COLUMNS = (
    "id", "name", "host", "pid", "concurrency", "queues", "resources", "state", "registered_at",
    "last_seen_at", "metrics", "hand_back", "capabilities", "labels",
)  # fmt: skip
PAUSE_COLUMNS = ("scope", "name", "paused_at", "until")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

# Most rows hold empty kwargs, labels, resources and dependencies: those skip the JSON parser,
# whose call costs more than the parse (a row is decoded on every lease and every report).
_EMPTY_TEXT = {"[]": list, "{}": dict}
_STATES = {state.value: state for state in TaskState}
_REASONS = {reason.value: reason for reason in Reason}


def dump_json(value: JSON) -> str:
    if not value and isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return _dumps(value)


def load_json(text: str | None) -> Any:
    if text is None:
        return None
    empty = _EMPTY_TEXT.get(text)
    return empty() if empty is not None else _loads(text)


def to_epoch(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _required_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def task_insert_row(t: Task) -> tuple[Any, ...]:
    return (
        t.id, t.name, t.handler, dump_json(t.args), dump_json(t.kwargs), t.queue, t.priority,
        t.state.value, t.reason.value if t.reason else None, dump_json(list(t.depends_on)),
        t.deps_left, to_epoch(t.not_before), t.timeout_s, t.max_retries, t.retries_used,
        None if t.retry == DEFAULT_RETRY_POLICY else t.retry.model_dump_json(), t.attempts,
        t.deliveries, dump_json(dict(t.resources)), t.key, dump_json(dict(t.labels)),
        None if t.result is None else dump_json(t.result), t.error, t.worker_id,
        to_epoch(t.lease_expires_at), to_epoch(t.created_at), to_epoch(t.updated_at),
        to_epoch(t.started_at), to_epoch(t.finished_at), int(t.has_refs),
        dump_json(dict(t.require)), dump_json(dict(t.prefer)), dump_json(list(t.limits)),
        t.held_on,
    )  # fmt: skip


def task_update_row(t: Task) -> tuple[Any, ...]:
    """MUTABLE_COLUMNS in order, then the id for the WHERE clause."""
    return (
        t.state.value, t.reason.value if t.reason else None, t.deps_left, to_epoch(t.not_before),
        t.retries_used, t.attempts, t.deliveries,
        None if t.result is None else dump_json(t.result), t.error, t.worker_id,
        to_epoch(t.lease_expires_at), to_epoch(t.updated_at), to_epoch(t.started_at),
        to_epoch(t.finished_at), t.held_on, t.id,
    )  # fmt: skip


def task_from_row(r: Sequence[Any]) -> Task:
    return Task(
        seq=r[0], id=r[1], name=r[2], handler=r[3], args=load_json(r[4]), kwargs=load_json(r[5]),
        queue=r[6], priority=r[7], state=_STATES[r[8]], reason=_REASONS[r[9]] if r[9] else None,
        depends_on=load_json(r[10]), deps_left=r[11], not_before=from_epoch(r[12]),
        timeout_s=r[13], max_retries=r[14], retries_used=r[15],
        retry=DEFAULT_RETRY_POLICY if r[16] is None else RetryPolicy.model_validate_json(r[16]),
        attempts=r[17], deliveries=r[18], resources=load_json(r[19]), key=r[20],
        labels=load_json(r[21]), result=load_json(r[22]), error=r[23], worker_id=r[24],
        lease_expires_at=from_epoch(r[25]), created_at=_required_time(r[26]),
        updated_at=_required_time(r[27]), started_at=from_epoch(r[28]),
        finished_at=from_epoch(r[29]), has_refs=bool(r[30]), require=load_json(r[31]),
        prefer=load_json(r[32]), limits=load_json(r[_LIMITS]), held_on=r[_HELD_ON],
    )  # fmt: skip


def attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.task_id, a.number, a.worker_id, to_epoch(a.started_at), to_epoch(a.lease_expires_at),
        to_epoch(a.finished_at), a.outcome.value if a.outcome else None, a.error, a.traceback,
        a.stdout_tail, a.stderr_tail,
    )  # fmt: skip


def attempt_from_row(r: Sequence[Any]) -> Attempt:
    return Attempt(
        task_id=r[0], number=r[1], worker_id=r[2], started_at=_required_time(r[3]),
        lease_expires_at=from_epoch(r[4]), finished_at=from_epoch(r[5]),
        outcome=Outcome(r[6]) if r[6] else None, error=r[7], traceback=r[8],
        stdout_tail=r[9], stderr_tail=r[10],
    )  # fmt: skip


SCHEDULE_COLUMNS = (
    "name", "spec", "next_run_at", "created_at", "last_run_at", "fired", "last_error",
    "last_error_at",
)  # fmt: skip


def schedule_row(s: Schedule) -> tuple[Any, ...]:
    return (
        s.name, s.spec.model_dump_json(), to_epoch(s.next_run_at), to_epoch(s.created_at),
        to_epoch(s.last_run_at), s.fired, s.last_error, to_epoch(s.last_error_at),
    )  # fmt: skip


def schedule_from_row(r: Sequence[Any]) -> Schedule:
    return Schedule(
        spec=ScheduleSpec.model_validate_json(r[1]), next_run_at=_required_time(r[2]),
        created_at=_required_time(r[3]), last_run_at=from_epoch(r[4]), fired=r[5],
        last_error=r[6], last_error_at=from_epoch(r[7]),
    )  # fmt: skip


def worker_row(w: Worker) -> tuple[Any, ...]:
    return (
        w.id, w.name, w.host, w.pid, w.concurrency, dump_json(list(w.queues)),
        dump_json(dict(w.resources)), w.state.value, to_epoch(w.registered_at),
        to_epoch(w.last_seen_at), dump_json(w.metrics), w.hand_back,
        None if w.capabilities is None else w.capabilities.model_dump_json(),
        dump_json(dict(w.labels)),
    )  # fmt: skip


def worker_from_row(r: Sequence[Any]) -> Worker:
    return Worker(
        id=r[0], name=r[1], host=r[2], pid=r[3], concurrency=r[4], queues=json.loads(r[5]),
        resources=json.loads(r[6]), state=WorkerState(r[7]), registered_at=_required_time(r[8]),
        last_seen_at=_required_time(r[9]), metrics=json.loads(r[10]), hand_back=bool(r[11]),
        capabilities=None if r[12] is None else Capabilities.model_validate_json(r[12]),
        labels=load_json(r[13]),
    )  # fmt: skip


def pause_row(p: Pause) -> tuple[Any, ...]:
    return (p.scope.value, p.name, to_epoch(p.paused_at), to_epoch(p.until))


def pause_from_row(r: Sequence[Any]) -> Pause:
    return Pause(
        scope=PauseScope(r[0]), name=r[1], paused_at=_required_time(r[2]), until=from_epoch(r[3])
    )


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of the stores, for the queries they build the same way."""

    mark: str  # a parameter placeholder
    label_equals: str  # labels[key] = value, with two placeholders (key, value)
    true: str

    def one_of(self, count: int) -> str:
        return f"IN ({', '.join([self.mark] * count)})"


SQLITE = Dialect("?", "json_extract(labels, '$.' || json_quote(?)) = ?", "1")
POSTGRES = Dialect("%s", "labels::jsonb ->> %s = %s", "true")


def task_filter(
    where: TaskFilter, after_seq: int | None, dialect: Dialect
) -> tuple[str, list[Any]]:
    """The WHERE condition and parameters of a task listing: newest first, after a cursor."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.states:
        clauses.append(f"state {dialect.one_of(len(where.states))}")
        params.extend(s.value for s in where.states)
    for column, value in (("queue", where.queue), ("name", where.name), ("handler", where.handler)):
        if value is not None:
            clauses.append(f"{column} = {dialect.mark}")
            params.append(value)
    for label in where.labels:
        clauses.append(dialect.label_equals)
        params.extend(label)
    if where.reason is not None:
        clauses.append(f"reason = {dialect.mark}")
        params.append(where.reason.value)
    if where.error is not None:
        clauses.append(f"coalesce(error, '') = {dialect.mark}")
        params.append(where.error)
    if where.ids:
        clauses.append(f"id {dialect.one_of(len(where.ids))}")
        params.extend(where.ids)
    for column, low, high in (
        ("created_at", where.created_after, where.created_before),
        ("finished_at", where.finished_after, where.finished_before),
    ):
        if low is not None:
            clauses.append(f"{column} >= {dialect.mark}")
            params.append(low.timestamp())
        if high is not None:
            clauses.append(f"{column} < {dialect.mark}")
            params.append(high.timestamp())
    if after_seq is not None:
        clauses.append(f"seq < {dialect.mark}")
        params.append(after_seq)
    return " AND ".join(clauses) or dialect.true, params


# ---- bulk actions -------------------------------------------------------------------------------

BULK_COLUMNS = (
    "id", "key", "action", "filter", "chunk_size", "upto_seq", "total", "estimate", "state",
    "cursor", "matched", "changed", "skipped", "chunks", "created_at", "updated_at",
    "finished_at", "runner", "runner_until", "error",
)  # fmt: skip


def filter_json(where: TaskFilter) -> str:
    """A filter as JSON text, only the criteria it has (what a bulk action stores)."""
    given: dict[str, Any] = {}
    if where.states:
        given["states"] = sorted(s.value for s in where.states)
    for name in ("queue", "name", "handler", "error"):
        if getattr(where, name) is not None:
            given[name] = getattr(where, name)
    if where.labels:
        given["labels"] = [list(pair) for pair in where.labels]
    if where.reason is not None:
        given["reason"] = where.reason.value
    if where.ids:
        given["ids"] = list(where.ids)
    for name in ("created_after", "created_before", "finished_after", "finished_before"):
        when = getattr(where, name)
        if when is not None:
            given[name] = when.timestamp()
    return _dumps(given)


def filter_from_json(text: str) -> TaskFilter:
    given = _loads(text)
    times = {
        name: from_epoch(given.get(name))
        for name in ("created_after", "created_before", "finished_after", "finished_before")
    }
    return TaskFilter(
        states=tuple(TaskState(s) for s in given.get("states", ())),
        queue=given.get("queue"),
        name=given.get("name"),
        handler=given.get("handler"),
        labels=tuple((k, v) for k, v in given.get("labels", ())),
        reason=Reason(given["reason"]) if "reason" in given else None,
        error=given.get("error"),
        ids=tuple(given.get("ids", ())),
        **times,
    )


def bulk_row(b: BulkRecord) -> tuple[Any, ...]:
    return (
        b.id, b.key, b.action.value, filter_json(b.where), b.chunk_size, b.upto_seq, b.total,
        b.estimate, b.state.value, b.cursor, b.matched, b.changed, b.skipped, b.chunks,
        to_epoch(b.created_at), to_epoch(b.updated_at), to_epoch(b.finished_at), b.runner,
        to_epoch(b.runner_until), b.error,
    )  # fmt: skip


def bulk_from_row(r: Sequence[Any]) -> BulkRecord:
    return BulkRecord(
        id=r[0], key=r[1], action=BulkAction(r[2]), where=filter_from_json(r[3]),
        chunk_size=r[4], upto_seq=r[5], total=r[6], estimate=r[7], state=BulkState(r[8]),
        cursor=r[9], matched=r[10], changed=r[11], skipped=r[12], chunks=r[13],
        created_at=_required_time(r[14]), updated_at=_required_time(r[15]),
        finished_at=from_epoch(r[16]), runner=r[17], runner_until=from_epoch(r[18]), error=r[19],
    )  # fmt: skip


# ---- limits -------------------------------------------------------------------------------------

LIMIT_COLUMNS = ("name", "concurrency", "rate", "per_s", "updated_at")


def limit_row(limit: Limit, now: datetime) -> tuple[Any, ...]:
    return (limit.name, limit.concurrency, limit.rate, limit.per_s, to_epoch(now))


def limit_from_row(r: Sequence[Any]) -> Limit:
    return Limit.model_construct(name=r[0], concurrency=r[1], rate=r[2], per_s=r[3])
