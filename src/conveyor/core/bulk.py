"""Bulk actions: one user action (retry, cancel, delete) on every task a filter selects.

Which tasks each action may change is the rule of the single-task action (`core.states`:
RETRYABLE_STATES, CANCELLABLE_STATES, DELETABLE_STATES), named here once per action so that a
dry run counts by the same sets the action applies. The other checks (a retry waits for its
dependencies to be retried first; a delete is refused while live tasks wait on the task) are
made by the engine, task by task, as the single-task action makes them.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from conveyor.core.states import (
    CANCELLABLE_STATES,
    DELETABLE_STATES,
    RETRYABLE_STATES,
    TaskState,
)


class BulkAction(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    DELETE = "delete"

    @property
    def applies_to(self) -> frozenset[TaskState]:
        """The states in which a task may be changed by this action."""
        return _APPLIES_TO[self]

    def may_change(self, states: Collection[TaskState]) -> frozenset[TaskState]:
        """Of the states a filter names (none: every state), those this action may change."""
        return self.applies_to & frozenset(states or TaskState)


_APPLIES_TO = {
    BulkAction.RETRY: RETRYABLE_STATES,
    BulkAction.CANCEL: CANCELLABLE_STATES,
    BulkAction.DELETE: DELETABLE_STATES,
}


class BulkState(StrEnum):
    RUNNING = "running"
    """Chunks remain; some server's timers run them (or will, once the last one's claim lapses)."""
    DONE = "done"
