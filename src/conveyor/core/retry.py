"""The retry policy: a pure function from an attempt's outcome to a decision."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conveyor.core.spec import RetryPolicy
from conveyor.core.states import Outcome, Reason, TaskState

DEFAULT_DELIVERY_LIMIT = 10
"""Leases a task may receive in all before it fails, whatever the cause: stops poison tasks."""

# Outcomes that are the task's own fault and spend one of its max_retries.
_SPENDS_A_RETRY = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CRASHED})
# Outcomes that are the infrastructure's fault: the task runs again for free (up to the delivery limit).
_FREE_REDELIVERY = frozenset({Outcome.LOST, Outcome.HANDED_BACK})


class Action(StrEnum):
    SUCCEED = "succeed"
    RETRY = "retry"  # back to pending until `delay_s` has passed
    REQUEUE = "requeue"  # straight back to queued; no retry spent
    FINISH = "finish"  # terminal in `state` with `reason`


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: TaskState
    reason: Reason | None = None
    delay_s: float = 0.0
    spends_retry: bool = False


def backoff_delay_s(policy: RetryPolicy, retry_number: int, random_fraction: float) -> float:
    """Delay before retry number `retry_number` (1-based), jittered by `random_fraction` in [0, 1)."""
    base = min(float(policy.backoff_max_s), float(policy.backoff_s) * 2.0 ** (retry_number - 1))
    # Jitter only shortens the delay, so backoff_max_s stays a true upper bound.
    return base * (1.0 - float(policy.jitter) * random_fraction)


def decide(
    outcome: Outcome,
    *,
    retries_used: int,
    max_retries: int,
    deliveries: int,
    delivery_limit: int,
    policy: RetryPolicy,
    random_fraction: float,
) -> Decision:
    """What happens to a task after an attempt ended with `outcome`.

    `retries_used` counts earlier retries spent; `deliveries` counts leases so far, this one included.
    """
    if outcome is Outcome.SUCCEEDED:
        return Decision(Action.SUCCEED, TaskState.SUCCEEDED)
    if outcome is Outcome.CANCELLED:
        return Decision(Action.FINISH, TaskState.CANCELLED, Reason.CANCELLED_BY_USER)
    if outcome in _FREE_REDELIVERY:
        if deliveries >= delivery_limit:
            return Decision(Action.FINISH, TaskState.FAILED, Reason.DELIVERY_LIMIT)
        return Decision(Action.REQUEUE, TaskState.QUEUED)
    if outcome not in _SPENDS_A_RETRY:  # pragma: no cover - exhaustive over Outcome
        raise ValueError(f"no retry rule for outcome {outcome}")
    if retries_used < max_retries and deliveries < delivery_limit:
        delay = backoff_delay_s(policy, retries_used + 1, random_fraction)
        return Decision(Action.RETRY, TaskState.PENDING, delay_s=delay, spends_retry=True)
    if deliveries >= delivery_limit and retries_used < max_retries:
        return Decision(Action.FINISH, TaskState.FAILED, Reason.DELIVERY_LIMIT, spends_retry=True)
    final_state = TaskState.TIMED_OUT if outcome is Outcome.TIMED_OUT else TaskState.FAILED
    if max_retries > 0:
        return Decision(Action.FINISH, final_state, Reason.RETRIES_EXHAUSTED)
    return Decision(
        Action.FINISH, final_state, Reason.CRASHED if outcome is Outcome.CRASHED else None
    )
