"""The one way a task changes state: checked against the transition table."""

from __future__ import annotations

from datetime import datetime

from conveyor.core.models import Task
from conveyor.core.states import TaskState, can_transition
from conveyor.errors import ConflictError


class IllegalTransitionError(ConflictError):
    """A change of state the table does not allow; the transaction making it is rolled back."""


def move(task: Task, target: TaskState, now: datetime) -> None:
    """Put `task` in `target` state, or raise if the table forbids it. Staying put is allowed."""
    if target is not task.state and not can_transition(task.state, target):
        raise IllegalTransitionError(
            f"task {task.id} cannot go from {task.state.value} to {target.value}"
        )
    if target is not task.state:
        task.held_on = None  # a task that moves on leaves the line it waited in for a limit
    task.state = target
    task.updated_at = now
