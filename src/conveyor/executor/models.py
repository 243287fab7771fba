"""What the executor is asked to run, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.core.states import Outcome
from conveyor.core.types import JSON, TaskId, Token


@dataclass(frozen=True, slots=True)
class Execution:
    """One attempt of one task: call `handler(*args, **kwargs)`, killing it after `timeout_s`."""

    task_id: TaskId
    token: Token
    """The fencing token of the lease this attempt runs under; echoed back in the result."""
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    timeout_s: float | None
    """Hard limit on the handler's run time; None means no limit."""


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """How one Execution ended.

    `outcome` is SUCCEEDED, FAILED, TIMED_OUT, CRASHED or CANCELLED; `result` is the handler's
    return value on success, else None; `error` is one line saying what went wrong.
    """

    task_id: TaskId
    token: Token
    outcome: Outcome
    result: JSON
    error: str | None
    traceback: str | None
    stdout_tail: str
    stderr_tail: str
    started_at: datetime
    finished_at: datetime

    @classmethod
    def unsuccessful(
        cls,
        execution: Execution,
        outcome: Outcome,
        error: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        stdout_tail: str = "",
        stderr_tail: str = "",
    ) -> ExecutionResult:
        """A result decided without the handler's word: refused, timed out, crashed, cancelled.
        The output tails are what the attempt wrote before it was stopped."""
        return cls(
            task_id=execution.task_id,
            token=execution.token,
            outcome=outcome,
            result=None,
            error=error,
            traceback=None,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            started_at=started_at,
            finished_at=finished_at,
        )
