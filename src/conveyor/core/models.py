"""Records as the store keeps them: tasks, attempts, workers. Plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from conveyor.core.capabilities import Capabilities
from conveyor.core.spec import RetryPolicy
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.core.types import JSON, TaskId, WorkerId


@dataclass(slots=True)
class Task:
    """A task's full durable record. `attempts` doubles as the current fencing token."""

    id: TaskId
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    queue: str
    priority: int
    state: TaskState
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    seq: int = 0  # submission order, assigned by the store
    depends_on: list[TaskId] = field(default_factory=list)
    deps_left: int = 0  # dependencies not yet succeeded
    not_before: datetime | None = None  # run_at, or the end of a retry backoff
    timeout_s: float | None = None
    max_retries: int = 0
    retries_used: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    attempts: int = 0  # leases granted so far, ever; the current lease's fencing token
    deliveries: int = (
        0  # leases since submit or the last manual retry; bounded by the delivery limit
    )
    resources: dict[str, float] = field(default_factory=dict)
    key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    limits: list[str] = field(default_factory=list)  # the keys of the limits it takes
    held_on: str | None = None  # while queued: the limit key it waits on (engine/limits.py)
    reason: Reason | None = None
    result: JSON = None
    error: str | None = None
    worker_id: WorkerId | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None  # first lease
    finished_at: datetime | None = None
    has_refs: bool = False  # args/kwargs hold {"$result": ...} references to resolve at lease time
    require: dict[str, str] = field(default_factory=dict)  # worker labels it must run on
    prefer: dict[str, str] = field(default_factory=dict)  # worker labels it goes to first

    @property
    def token(self) -> int:
        return self.attempts


@dataclass(slots=True)
class Attempt:
    """One lease of a task: who ran it, when, and how it ended."""

    task_id: TaskId
    number: int  # equals the fencing token of the lease
    worker_id: WorkerId | None
    started_at: datetime
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: Outcome | None = None  # None while running
    error: str | None = None
    traceback: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """A task with its attempts and the tasks that depend on it, read in one snapshot."""

    task: Task
    attempts: list[Attempt]
    dependents: list[TaskId]


class WorkerState(StrEnum):
    ALIVE = "alive"
    DRAINING = "draining"
    DEAD = "dead"  # missed its heartbeats
    GONE = "gone"  # deregistered


@dataclass(slots=True)
class Worker:
    id: WorkerId
    name: str
    host: str
    pid: int
    concurrency: int
    queues: list[str]
    resources: dict[str, float]
    state: WorkerState
    registered_at: datetime
    last_seen_at: datetime
    metrics: dict[str, JSON] = field(default_factory=dict)
    hand_back: bool = False
    """Told to hand back its running tasks now and exit (`conveyor workers stop`), rather than
    finish them as a drain does; its state is draining."""
    capabilities: Capabilities | None = None
    """What it runs, as it advertised (conveyor.core.capabilities); None: it did not say, and
    is offered any handler."""
    labels: dict[str, str] = field(default_factory=dict)
    """The operator's labels (`zone=eu`), which tasks may require or prefer."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A leased task as handed to a worker: what to run and the token to report with."""

    task_id: TaskId
    token: int
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    timeout_s: float | None
    lease_expires_at: datetime
    name: str | None = None
    queue: str = "default"
    resources: dict[str, float] = field(default_factory=dict)
