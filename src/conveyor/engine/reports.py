"""What workers send and receive: reports of finished attempts, heartbeat answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.core.states import Outcome, TaskState
from conveyor.core.types import JSON, TaskId, Token


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's account of one attempt."""

    task_id: TaskId
    token: Token
    outcome: Outcome
    result: JSON = None
    error: str | None = None
    traceback: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


def unstorable(report: Report, why: Exception) -> Report:
    """`report` as a failed attempt that says why the store refused it, keeping nothing of what
    the store could not hold: no result, no output."""
    return Report(
        report.task_id,
        report.token,
        Outcome.FAILED,
        error=f"the server could not store this attempt's report ({why}); its result is lost",
    )


@dataclass(frozen=True, slots=True)
class ReportAck:
    task_id: TaskId
    accepted: bool
    state: TaskState | None  # the task's state after the report; None if the task is unknown
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """Leases extended, and the ones the worker must stop (cancelled, expired, or re-leased)."""

    extended: list[TaskId] = field(default_factory=list)
    stop: list[TaskId] = field(default_factory=list)
    drain: bool = False
    hand_back: bool = False
    """With `drain`: hand back the running tasks now rather than let them finish."""
