"""Request and response bodies of the REST API (v1).

The server validates requests with these models (422 names the field); the SDK, CLI and worker
parse responses with them. Extra fields are refused in requests and ignored in responses, so a
newer server can add response fields without breaking older clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.capabilities import Capabilities
from conveyor.core.limits import MAX_ARGS_BYTES, MAX_RESULT_BYTES, check_json
from conveyor.core.models import Assignment, Attempt, Task, Worker
from conveyor.core.spec import (
    KEYS_BY_PATTERN,
    QUEUE_PATTERN,
    WHOLE,
    LabelKey,
    LabelValue,
    Number,
    PlacementLabels,
    ResourceMap,
    TaskSpec,
    Timestamp,
)
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.core.text import CLEANED, TEXT, clean_json, clean_text
from conveyor.core.types import JSON

API_PREFIX = "/api/v1"
WORKER_SECRET_HEADER = "X-Conveyor-Worker-Secret"
"""Carries a worker's own secret, from its registration, on the calls it makes for itself."""
MAX_BATCH = 10_000
Name = Annotated[str, Field(min_length=1, max_length=200), TEXT]
Queue = Annotated[str, Field(pattern=QUEUE_PATTERN)]
Id = Annotated[str, Field(min_length=1, max_length=64), TEXT]
FencingToken = Annotated[StrictInt, Field(ge=1), WHOLE]
MAX_PID = 2**32 - 1  # larger ones do not fit the store's integer columns, nor any OS


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---- tasks ------------------------------------------------------------------------------------


class BatchIn(Request):
    tasks: Annotated[list[TaskSpec], Field(min_length=1, max_length=MAX_BATCH)]


class AttemptOut(Response):
    number: int
    worker_id: str | None
    started_at: datetime
    finished_at: datetime | None
    lease_expires_at: datetime | None
    outcome: Outcome | None
    error: str | None
    traceback: str | None
    stdout_tail: str
    stderr_tail: str

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            number=a.number, worker_id=a.worker_id, started_at=a.started_at,
            finished_at=a.finished_at, lease_expires_at=a.lease_expires_at, outcome=a.outcome,
            error=a.error, traceback=a.traceback, stdout_tail=a.stdout_tail,
            stderr_tail=a.stderr_tail,
        )  # fmt: skip


class TaskOut(Response):
    id: str
    name: str | None
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    queue: str
    priority: int
    state: TaskState
    reason: Reason | None
    depends_on: list[str]
    run_at: datetime | None = Field(
        description="Start no earlier than this (start time or retry backoff)."
    )
    timeout_s: float | None
    max_retries: int
    retries_used: int
    attempts: int
    resources: dict[str, float]
    key: str | None
    labels: dict[str, str]
    require: dict[str, str] = Field(default_factory=dict)
    prefer: dict[str, str] = Field(default_factory=dict)
    limits: list[str] = Field(
        default_factory=list, description="The keys of the limits it takes, as filled in at submit."
    )
    held_on: str | None = Field(
        default=None,
        description="While queued: the limit key in whose line it waits; leases take tasks "
        "from that line as the key has room (`GET /limits/{name}`).",
    )
    result: JSON
    error: str | None
    worker_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, t: Task) -> TaskOut:
        return cls(
            id=t.id, name=t.name, handler=t.handler, args=t.args, kwargs=t.kwargs, queue=t.queue,
            priority=t.priority, state=t.state, reason=t.reason, depends_on=t.depends_on,
            run_at=t.not_before, timeout_s=t.timeout_s, max_retries=t.max_retries,
            retries_used=t.retries_used, attempts=t.attempts, resources=t.resources, key=t.key,
            labels=t.labels, require=t.require, prefer=t.prefer, result=t.result, error=t.error,
            worker_id=t.worker_id, limits=t.limits, held_on=t.held_on,
            lease_expires_at=t.lease_expires_at, created_at=t.created_at,
            updated_at=t.updated_at, started_at=t.started_at, finished_at=t.finished_at,
        )  # fmt: skip


class TaskDetail(TaskOut):
    attempt_log: list[AttemptOut] = Field(default_factory=list)
    dependents: list[str] = Field(default_factory=list)


class BatchOut(Response):
    tasks: list[TaskOut]


class TaskPage(Response):
    tasks: list[TaskOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null at the end."
    )


class ResultOut(Response):
    id: str
    state: TaskState
    done: bool = Field(description="True once the task is in a terminal state.")
    result: JSON
    error: str | None
    reason: Reason | None

    @classmethod
    def of(cls, t: Task | TaskOut) -> ResultOut:
        """The outcome part of a stored task, or of a task as the API gave it."""
        return cls(
            id=t.id, state=t.state, done=t.state.is_terminal, result=t.result, error=t.error,
            reason=t.reason,
        )  # fmt: skip


MAX_WAIT_IDS = 1000
"""The most tasks one bulk wait names (`wait_results`); a client splits longer lists."""


TaskId = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
"""A task id as the server makes them (conveyor.ids)."""


class TaskIds(Request):
    ids: Annotated[list[TaskId], Field(min_length=1, max_length=MAX_WAIT_IDS)]


class ResultsOut(Response):
    results: list[ResultOut] = Field(description="One per id asked for, in the same order.")


# ---- workers ----------------------------------------------------------------------------------


class RegisterIn(Request):
    name: Name
    host: Name
    pid: Annotated[StrictInt, Field(ge=0, le=MAX_PID), WHOLE]
    concurrency: Annotated[StrictInt, Field(ge=1, le=10_000), WHOLE]
    queues: Annotated[list[Queue], Field(min_length=1, max_length=100)] = Field(
        default_factory=lambda: ["default"]
    )
    resources: ResourceMap = Field(default_factory=dict)
    capabilities: Capabilities | None = Field(
        default=None,
        description="What it runs; null: it does not say, and is offered tasks of any handler.",
    )
    labels: PlacementLabels = Field(
        default_factory=dict, description="Its labels (`zone: eu`), for tasks' `require`/`prefer`."
    )


class RegisterOut(Response):
    id: str
    heartbeat_interval_s: float
    lease_s: float
    secret: str = Field(
        default="",
        description="This worker's own secret: send it in `X-Conveyor-Worker-Secret` with every "
        "heartbeat, lease and report (and to deregister itself). The bearer token says a caller "
        "is a worker; the secret says which one.",
    )


class HeldLease(Request):
    task_id: Id
    token: FencingToken


class HeartbeatIn(Request):
    running: Annotated[list[HeldLease], Field(max_length=10_000)] = Field(default_factory=list)
    wait_s: Annotated[Number, Field(ge=0, le=60)] = Field(
        default=0,
        description="With nothing to tell the worker, hold the answer up to this long, and "
        "answer as soon as a task it runs is cancelled or it is told to drain or stop.",
    )
    metrics: dict[str, JSON] | None = Field(
        default=None,
        description="Shown as sent, except text no database can store (NUL, lone surrogates), "
        "which becomes U+FFFD, and numbers that are not finite, which become null.",
    )

    @field_validator("metrics")
    @classmethod
    def _storable_metrics(cls, value: dict[str, JSON] | None) -> dict[str, JSON] | None:
        # Cleaned rather than refused: a refused heartbeat would cost the worker its leases.
        if value is None:
            return None
        _bounded(value, max_bytes=MAX_ARGS_BYTES, what="metrics")
        return {clean_text(key): clean_json(item) for key, item in value.items()}


class HeartbeatOut(Response):
    stop: list[str] = Field(description="Task ids whose execution the worker must kill now.")
    drain: bool = Field(
        description="Lease nothing more, let the running tasks finish (within the worker's "
        "grace period), then exit: an operator drained it."
    )
    hand_back: bool = Field(
        default=False,
        description="With `drain`: hand the running tasks back now (they run again elsewhere, "
        "without spending a retry) and exit: an operator stopped it.",
    )
    lease_s: float = Field(
        description="Each lease the heartbeat listed, and `stop` does not name, now runs at "
        "least this long from when the heartbeat was sent."
    )


class LeaseIn(Request):
    max: Annotated[StrictInt, Field(ge=1, le=1000), WHOLE] = 1
    wait_s: Annotated[Number, Field(ge=0, le=60)] = 0
    queues: Annotated[list[Queue], Field(max_length=100)] | None = None
    free: ResourceMap | None = Field(
        default=None, description="Resources free now; null means all advertised."
    )
    follow: StrictBool = Field(
        default=False,
        description="On the persistent connection, keep the call open after an answer with "
        "tasks: each task that gets ready later comes in an answer of its own, until `max` "
        "tasks have come or `wait_s` passes with none. REST answers once.",
    )


class AssignmentOut(Response):
    task_id: str
    token: int
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    timeout_s: float | None
    lease_expires_at: datetime
    name: str | None
    queue: str
    resources: dict[str, float]

    @classmethod
    def of(cls, a: Assignment) -> AssignmentOut:
        return cls(
            task_id=a.task_id, token=a.token, handler=a.handler, args=a.args, kwargs=a.kwargs,
            timeout_s=a.timeout_s, lease_expires_at=a.lease_expires_at, name=a.name,
            queue=a.queue, resources=a.resources,
        )  # fmt: skip


class LeaseOut(Response):
    tasks: list[AssignmentOut]
    waited_s: float = Field(
        description="How long the server held the poll before the look that leased `tasks`."
    )
    lease_s: float = Field(
        description="Each lease runs at least `waited_s + lease_s` from when the request was "
        "sent: a worker that cannot start a task by then hands it back unstarted."
    )

    @classmethod
    def of(cls, leased: Sequence[Assignment], *, waited_s: float, lease_s: float) -> LeaseOut:
        tasks = [AssignmentOut.of(a) for a in leased]
        return cls(tasks=tasks, waited_s=round(waited_s, 6), lease_s=lease_s)


class ReportIn(Request):
    """One finished attempt. Its text fields are kept as sent, except text no database can store
    (NUL, lone surrogates), which becomes U+FFFD: a report is never refused for what the task
    printed or raised. The result is kept as sent; the engine decides what a store cannot hold."""

    task_id: Id
    token: FencingToken
    outcome: Outcome
    result: JSON = None
    error: Annotated[str, Field(max_length=10_000), CLEANED] | None = None
    traceback: Annotated[str, Field(max_length=100_000), CLEANED] | None = None
    stdout_tail: Annotated[str, Field(max_length=100_000), CLEANED] = ""
    stderr_tail: Annotated[str, Field(max_length=100_000), CLEANED] = ""

    @field_validator("result")
    @classmethod
    def _bounded_result(cls, value: JSON) -> JSON:
        _bounded(value, max_bytes=MAX_RESULT_BYTES, what="result")
        return value


def _bounded(value: JSON, *, max_bytes: int, what: str) -> None:
    """check_json, for JSON that may hold lone surrogates (a worker's, before cleaning)."""
    try:
        check_json(value, max_bytes=max_bytes, what=what)
    except UnicodeEncodeError:
        # Raised once the depth is known to be in bounds: a lone surrogate has no UTF-8 form to
        # measure, so measure the value with U+FFFD (as long in UTF-8) in its place.
        check_json(clean_json(value), max_bytes=max_bytes, what=what)


class ReportBatchIn(Request):
    reports: Annotated[list[ReportIn], Field(min_length=1, max_length=1000)]


class AckOut(Response):
    task_id: str
    accepted: bool
    state: TaskState | None
    detail: str


class ReportBatchOut(Response):
    acks: list[AckOut]


class WorkerOut(Response):
    id: str
    name: str
    host: str
    pid: int
    concurrency: int
    queues: list[str]
    resources: dict[str, float]
    state: str
    registered_at: datetime
    last_seen_at: datetime
    metrics: dict[str, JSON]
    running: list[str] = Field(default_factory=list, description="Ids of tasks leased to it now.")
    hand_back: bool = Field(
        default=False,
        description="Told to stop: to hand back its running tasks and exit (state draining).",
    )
    capabilities: Capabilities | None = Field(
        default=None, description="What it runs, as it advertised; null: it did not say."
    )
    labels: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, w: Worker, running: list[str] | None = None) -> WorkerOut:
        return cls(
            id=w.id, name=w.name, host=w.host, pid=w.pid, concurrency=w.concurrency,
            queues=w.queues, resources=w.resources, state=w.state.value,
            registered_at=w.registered_at, last_seen_at=w.last_seen_at, metrics=w.metrics,
            running=running or [], hand_back=w.hand_back, capabilities=w.capabilities,
            labels=w.labels,
        )  # fmt: skip


class WorkerList(Response):
    workers: list[WorkerOut]


# ---- status -----------------------------------------------------------------------------------


class StatusOut(Response):
    counts: dict[str, int] = Field(description="Tasks by state, all queues.")
    queues: dict[str, dict[str, int]] = Field(description="Tasks by queue, then state.")
    workers_alive: int
    workers_total: int
    finished_last_minute: int = Field(
        description="Tasks that reached a terminal state in the last 60 s, seen by this server."
    )
    unschedulable: int = Field(
        default=0,
        description="Pending and queued tasks no live worker could ever take (none serves "
        "their queue, or none of those has what they need); `GET /tasks/{task_id}/why` says "
        "why for one. Counted at most every 10 s (longer on very long queues).",
    )


class MetricPoint(Response):
    """A host's main figures at one moment, as kept in the server's short history."""

    at: datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_percent: float | None = None
    load_1m: float | None = None
    disk_read_bytes_per_s: float | None = None
    disk_write_bytes_per_s: float | None = None
    net_sent_bytes_per_s: float | None = None
    net_recv_bytes_per_s: float | None = None
    gpu_percent: float | None = Field(default=None, description="Mean utilisation of its GPUs.")
    gpu_memory_percent: float | None = Field(
        default=None, description="GPU memory used, all GPUs together."
    )


class MonitorOut(Response):
    server: dict[str, JSON]
    workers: list[dict[str, JSON]]
    interval_s: float = Field(
        default=0, description="How often this server samples its host and workers' heartbeats."
    )
    server_history: list[MetricPoint] = Field(
        default_factory=list, description="The server host, oldest first (this server's memory)."
    )
    worker_history: dict[str, list[MetricPoint]] = Field(
        default_factory=dict, description="Each live worker's heartbeat figures, by worker id."
    )


class StatusPoint(Response):
    at: datetime
    counts: dict[str, int] = Field(description="Tasks by state, all queues.")
    finished: int = Field(description="Tasks this server saw finish since the previous point.")


class StatusHistoryOut(Response):
    interval_s: float
    points: list[StatusPoint] = Field(description="Oldest first; kept in this server's memory.")


# ---- dashboard views --------------------------------------------------------------------------


class TaskSearchPage(TaskPage):
    scanned: int = Field(description="Tasks looked at to answer; `next_cursor` continues after.")


class GraphNode(Response):
    id: str
    name: str | None
    handler: str
    queue: str
    state: TaskState
    reason: Reason | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class GraphOut(Response):
    root: str = Field(description="The task the graph was drawn from.")
    name: str | None = Field(default=None, description="The workflow's name, for a workflow.")
    nodes: list[GraphNode]
    edges: list[tuple[str, str]] = Field(description="(dependency, dependent) pairs.")
    truncated: bool = Field(description="True when the graph is larger than what was returned.")


class WorkflowSummary(Response):
    id: str = Field(description="Its first submitted task; GET /workflows/{id} draws it.")
    name: str
    tasks: int
    counts: dict[str, int] = Field(description="Its tasks by state.")
    created_at: datetime
    updated_at: datetime
    complete: bool = Field(description="False when some of its tasks are older than the scan.")


class WorkflowList(Response):
    workflows: list[WorkflowSummary]
    scanned: int = Field(description="The newest tasks looked at to find them.")


class HealthOut(Response):
    status: str
    version: str
    store: str


# ---- bulk actions -----------------------------------------------------------------------------

MAX_BULK_IDS = 1000
"""The most ids one bulk action names; a client splits longer lists into several actions."""
LabelMap = Annotated[
    dict[LabelKey, LabelValue],
    Field(min_length=1, max_length=20),
    KEYS_BY_PATTERN,  # so that a key holding NUL is outside the schema, as it is refused
]
FAILURE_STATES = [TaskState.FAILED, TaskState.TIMED_OUT]
"""The states the failure groups count (GET /failures) and a group's filter names."""


class TaskSelection(Request):
    """The tasks a bulk action is for: every task that meets all the criteria given (at least
    one). Time ranges include their start and exclude their end."""

    state: Annotated[list[TaskState], Field(min_length=1, max_length=len(TaskState))] | None = (
        Field(default=None, description="Any of these states.")
    )
    queue: Queue | None = None
    name: Name | None = None
    handler: Name | None = None
    labels: LabelMap | None = Field(default=None, description="Labels the task must all have.")
    reason: Reason | None = None
    error: Annotated[str, Field(max_length=10_000), TEXT] | None = Field(
        default=None,
        description="The task's error message, exactly (as the failure groups show it); the "
        "empty text selects tasks without one.",
    )
    ids: Annotated[list[TaskId], Field(min_length=1, max_length=MAX_BULK_IDS)] | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    finished_after: Timestamp | None = None
    finished_before: Timestamp | None = None

    @model_validator(mode="after")
    def _ranges(self) -> TaskSelection:
        for low, high in (
            ("created_after", "created_before"),
            ("finished_after", "finished_before"),
        ):
            start, end = getattr(self, low), getattr(self, high)
            if start is not None and end is not None and start >= end:
                raise ValueError(f"{low} must come before {high}")
        return self


class BulkIn(Request):
    action: BulkAction = Field(
        description="`retry` (failed, timed-out or cancelled tasks), `cancel` (pending, queued "
        "or running ones: running ones are killed on their worker) or `delete` (any task that "
        "is not running), each as the single-task operation does it."
    )
    filter: TaskSelection
    dry_run: StrictBool = Field(
        default=False,
        description="Change nothing: count the tasks the filter matches, by state, and those "
        "the action would change, with a sample of them.",
    )
    key: Annotated[str, Field(min_length=1, max_length=200), TEXT] | None = Field(
        default=None,
        description="Asking again with the same key returns that action as it is now (and "
        "resumes it here if its server stopped) instead of starting another.",
    )
    chunk_size: Annotated[StrictInt, Field(ge=1, le=5000), WHOLE] = Field(
        default=500, description="Tasks changed per transaction."
    )


class BulkOut(Response):
    id: str | None = Field(description="null for a dry run, which is not stored.")
    action: BulkAction
    filter: dict[str, JSON] = Field(description="The filter as asked.")
    dry_run: bool
    key: str | None
    state: BulkState
    done: bool
    total: int = Field(description="Tasks that matched the filter when the action was asked.")
    estimate: int = Field(
        description="Of those, the ones in a state the action may change then: what a dry run "
        "says would change. (A retry also waits for a failed dependency to be retried first, "
        "and a delete for the live tasks that wait on a task: those are skipped.)"
    )
    by_state: dict[str, int] = Field(
        default_factory=dict, description="A dry run's matching tasks by state."
    )
    sample: list[TaskOut] = Field(
        default_factory=list, description="A dry run's: some of the tasks it would change."
    )
    matched: int = Field(description="Tasks looked at so far that matched.")
    changed: int
    skipped: int = Field(description="Tasks that matched but the action's rule left alone.")
    chunks: int = Field(description="Transactions committed so far.")
    chunk_size: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: str | None = Field(
        default=None, description="Why its last chunk failed, if it did; it is tried again."
    )


class FailureGroupOut(Response):
    error: str | None = Field(
        description="The error message the tasks share (empty: none); null for the tasks that "
        "failed because a dependency did, which run again when it is retried."
    )
    count: int
    last_finished_at: datetime | None
    filter: dict[str, JSON] = Field(description="A bulk action's filter for exactly this group.")


class FailuresOut(Response):
    groups: list[FailureGroupOut] = Field(description="The largest groups first.")
    scanned: int = Field(description="Failed or timed-out tasks looked at, newest first.")
    complete: bool = Field(
        description="False when there are more failures than were looked at (the counts are "
        "then those of the newest `scanned`)."
    )
