"""Task states, attempt outcomes, and the one table of allowed transitions.

```
pending ──▶ queued ──▶ running ──▶ succeeded
   │          │          ├──────▶ failed | timed_out | cancelled
   │          │          ├──▶ queued   (lease lost, worker dead: not the task's fault)
   │          │          └──▶ pending  (retry after backoff)
   ├──────────┴──▶ cancelled | failed (dependency_failed, delivery limit)
failed | timed_out | cancelled ──▶ pending | queued   (manual retry)
```
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED}
)
LIVE_STATES = frozenset({TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING})
UNSUCCESSFUL_STATES = TERMINAL_STATES - {TaskState.SUCCEEDED}


class Outcome(StrEnum):
    """How one attempt ended, as the executor or the engine saw it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the handler raised or exited non-zero
    TIMED_OUT = "timed_out"  # killed after timeout_s
    CRASHED = "crashed"  # the child process died (os._exit, signal, out of memory)
    CANCELLED = "cancelled"  # killed because a user cancelled the task
    LOST = "lost"  # the lease expired or the worker died: infrastructure, not the task
    HANDED_BACK = "handed_back"  # the worker gave the task back unstarted or while draining


class Reason(StrEnum):
    """Why a task ended the way it did, when the state alone does not say."""

    DEPENDENCY_FAILED = "dependency_failed"
    DELIVERY_LIMIT = "delivery_limit"
    RETRIES_EXHAUSTED = "retries_exhausted"
    CANCELLED_BY_USER = "cancelled_by_user"
    CRASHED = "crashed"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.QUEUED, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset(
        {TaskState.RUNNING, TaskState.PENDING, TaskState.CANCELLED, TaskState.FAILED}
    ),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.TIMED_OUT,
            TaskState.CANCELLED,
            TaskState.QUEUED,
            TaskState.PENDING,
        }
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset({TaskState.PENDING, TaskState.QUEUED}),
    TaskState.TIMED_OUT: frozenset({TaskState.PENDING, TaskState.QUEUED}),
    TaskState.CANCELLED: frozenset({TaskState.PENDING, TaskState.QUEUED}),
}


def can_transition(current: TaskState, target: TaskState) -> bool:
    return target in TRANSITIONS[current]


CANCELLABLE_STATES = frozenset({TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING})
RETRYABLE_STATES = frozenset({TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED})
DELETABLE_STATES = frozenset(TaskState) - {TaskState.RUNNING}


LEASE_EXPIRED = "lease expired"
"""The error of an attempt ended because its lease ran out with no word from its worker."""
WORKER_DEAD = "worker stopped heartbeating"
"""The error of an attempt whose worker was declared dead (its lease over)."""
WORKER_DEREGISTERED = "worker deregistered"
"""The error of an attempt whose worker was deregistered: at once if it was stopped, else when
its lease ran out."""
