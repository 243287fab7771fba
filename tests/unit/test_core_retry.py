"""The retry policy: every outcome against retries left/exhausted and the delivery limit."""

from __future__ import annotations

import pytest

from conveyor.core.retry import (
    DEFAULT_DELIVERY_LIMIT,
    Action,
    Decision,
    backoff_delay_s,
    decide,
)
from conveyor.core.spec import RetryPolicy
from conveyor.core.states import Outcome, Reason, TaskState

LIMIT = 10
MAX_RETRIES = 3
# retries_used for each budget; "none" is a task submitted with max_retries=0.
BUDGETS = {"left": (1, MAX_RETRIES), "exhausted": (MAX_RETRIES, MAX_RETRIES), "none": (0, 0)}
# deliveries (this lease included) for each position against the limit.
DELIVERIES = {"under": 4, "at": LIMIT, "over": LIMIT + 1}

A, St, Re = Action, TaskState, Reason
_SUCCEED = (A.SUCCEED, St.SUCCEEDED, None, False)
_CANCEL = (A.FINISH, St.CANCELLED, Re.CANCELLED_BY_USER, False)
_REQUEUE = (A.REQUEUE, St.QUEUED, None, False)
_DELIVERY_LIMIT = (A.FINISH, St.FAILED, Re.DELIVERY_LIMIT, False)
_RETRY = (A.RETRY, St.PENDING, None, True)
_LIMIT_WITH_RETRIES_LEFT = (A.FINISH, St.FAILED, Re.DELIVERY_LIMIT, True)

# (outcome, budget, deliveries) -> (action, state, reason, spends_retry)
TABLE: list[tuple[Outcome, str, str, tuple[Action, TaskState, Reason | None, bool]]] = [
    # success and cancellation ignore both budgets
    *[(Outcome.SUCCEEDED, b, d, _SUCCEED) for b in BUDGETS for d in DELIVERIES],
    *[(Outcome.CANCELLED, b, d, _CANCEL) for b in BUDGETS for d in DELIVERIES],
    # infrastructure loss: free redelivery until the delivery limit, whatever the retry budget
    *[(Outcome.LOST, b, "under", _REQUEUE) for b in BUDGETS],
    *[(Outcome.LOST, b, d, _DELIVERY_LIMIT) for b in BUDGETS for d in ("at", "over")],
    *[(Outcome.HANDED_BACK, b, "under", _REQUEUE) for b in BUDGETS],
    *[(Outcome.HANDED_BACK, b, d, _DELIVERY_LIMIT) for b in BUDGETS for d in ("at", "over")],
    # the task's own fault: spends a retry while any is left
    (Outcome.FAILED, "left", "under", _RETRY),
    (Outcome.FAILED, "left", "at", _LIMIT_WITH_RETRIES_LEFT),
    (Outcome.FAILED, "left", "over", _LIMIT_WITH_RETRIES_LEFT),
    (Outcome.FAILED, "exhausted", "under", (A.FINISH, St.FAILED, Re.RETRIES_EXHAUSTED, False)),
    (Outcome.FAILED, "exhausted", "at", (A.FINISH, St.FAILED, Re.RETRIES_EXHAUSTED, False)),
    (Outcome.FAILED, "none", "under", (A.FINISH, St.FAILED, None, False)),
    (Outcome.FAILED, "none", "at", (A.FINISH, St.FAILED, None, False)),
    (Outcome.TIMED_OUT, "left", "under", _RETRY),
    (Outcome.TIMED_OUT, "left", "at", _LIMIT_WITH_RETRIES_LEFT),
    (
        Outcome.TIMED_OUT,
        "exhausted",
        "under",
        (A.FINISH, St.TIMED_OUT, Re.RETRIES_EXHAUSTED, False),
    ),
    (Outcome.TIMED_OUT, "exhausted", "at", (A.FINISH, St.TIMED_OUT, Re.RETRIES_EXHAUSTED, False)),
    (Outcome.TIMED_OUT, "none", "under", (A.FINISH, St.TIMED_OUT, None, False)),
    (Outcome.TIMED_OUT, "none", "at", (A.FINISH, St.TIMED_OUT, None, False)),
    (Outcome.CRASHED, "left", "under", _RETRY),
    (Outcome.CRASHED, "left", "at", _LIMIT_WITH_RETRIES_LEFT),
    (Outcome.CRASHED, "exhausted", "under", (A.FINISH, St.FAILED, Re.RETRIES_EXHAUSTED, False)),
    (Outcome.CRASHED, "exhausted", "at", (A.FINISH, St.FAILED, Re.RETRIES_EXHAUSTED, False)),
    (Outcome.CRASHED, "none", "under", (A.FINISH, St.FAILED, Re.CRASHED, False)),
    (Outcome.CRASHED, "none", "at", (A.FINISH, St.FAILED, Re.CRASHED, False)),
]

POLICY = RetryPolicy(backoff_s=2, backoff_max_s=300, jitter=0.5)


def test_table_covers_every_outcome_budget_and_limit() -> None:
    wanted = {(o, b, d) for o in Outcome for b in BUDGETS for d in ("under", "at")}
    assert wanted <= {(o, b, d) for o, b, d, _ in TABLE}


@pytest.mark.parametrize(
    ("outcome", "budget", "position", "expected"),
    TABLE,
    ids=[f"{o}-retries_{b}-deliveries_{d}" for o, b, d, _ in TABLE],
)
def test_decide(
    outcome: Outcome,
    budget: str,
    position: str,
    expected: tuple[Action, TaskState, Reason | None, bool],
) -> None:
    retries_used, max_retries = BUDGETS[budget]
    decision = decide(
        outcome,
        retries_used=retries_used,
        max_retries=max_retries,
        deliveries=DELIVERIES[position],
        delivery_limit=LIMIT,
        policy=POLICY,
        random_fraction=0.0,
    )
    assert (decision.action, decision.state, decision.reason, decision.spends_retry) == expected
    if decision.action is not Action.RETRY:
        assert decision.delay_s == 0.0


@pytest.mark.parametrize(
    ("retries_used", "random_fraction", "expected_delay_s"),
    [(0, 0.0, 2.0), (1, 0.0, 4.0), (2, 0.0, 8.0), (2, 0.5, 6.0)],
    ids=["first-retry", "second-retry", "third-retry", "third-retry-jittered"],
)
def test_retry_delay_is_the_backoff_of_the_next_retry(
    retries_used: int, random_fraction: float, expected_delay_s: float
) -> None:
    decision = decide(
        Outcome.FAILED,
        retries_used=retries_used,
        max_retries=MAX_RETRIES,
        deliveries=1,
        delivery_limit=LIMIT,
        policy=POLICY,
        random_fraction=random_fraction,
    )
    assert decision == Decision(
        Action.RETRY, TaskState.PENDING, delay_s=expected_delay_s, spends_retry=True
    )
    assert decision.delay_s == backoff_delay_s(POLICY, retries_used + 1, random_fraction)


def test_default_delivery_limit() -> None:
    assert DEFAULT_DELIVERY_LIMIT == 10


# --- backoff_delay_s ---------------------------------------------------------------------------

NO_JITTER = RetryPolicy(backoff_s=1, backoff_max_s=1_000, jitter=0)


@pytest.mark.parametrize(
    ("retry_number", "expected_s"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (10, 512.0)],
    ids=lambda v: str(v),
)
def test_backoff_grows_exponentially(retry_number: int, expected_s: float) -> None:
    assert backoff_delay_s(NO_JITTER, retry_number, 0.0) == expected_s


@pytest.mark.parametrize(
    ("policy", "retry_number", "expected_s"),
    [
        (RetryPolicy(backoff_s=1, backoff_max_s=10, jitter=0), 4, 8.0),
        (RetryPolicy(backoff_s=1, backoff_max_s=10, jitter=0), 5, 10.0),
        (RetryPolicy(backoff_s=1, backoff_max_s=10, jitter=0), 100, 10.0),
        (RetryPolicy(backoff_s=3, backoff_max_s=3, jitter=0), 1, 3.0),
        (RetryPolicy(backoff_s=0, backoff_max_s=10, jitter=0), 7, 0.0),
        (RetryPolicy(backoff_s=5, backoff_max_s=0, jitter=0), 1, 0.0),
    ],
    ids=["below-cap", "capped", "capped-at-retry-100", "cap-equals-base", "zero-base", "zero-cap"],
)
def test_backoff_is_capped(policy: RetryPolicy, retry_number: int, expected_s: float) -> None:
    assert backoff_delay_s(policy, retry_number, 0.0) == expected_s


JITTERY = RetryPolicy(backoff_s=1, backoff_max_s=60, jitter=0.25)


@pytest.mark.parametrize("retry_number", [1, 3, 6, 7, 20], ids=lambda n: f"retry-{n}")
@pytest.mark.parametrize(
    "random_fraction", [0.0, 0.1, 0.5, 0.9, 0.999999], ids=lambda f: f"fraction-{f}"
)
def test_jitter_only_shortens_within_bounds(retry_number: int, random_fraction: float) -> None:
    base = backoff_delay_s(JITTERY, retry_number, 0.0)
    delay = backoff_delay_s(JITTERY, retry_number, random_fraction)
    assert base * (1 - JITTERY.jitter) <= delay <= base
    assert delay <= JITTERY.backoff_max_s
    assert delay == pytest.approx(base * (1 - JITTERY.jitter * random_fraction))


@pytest.mark.parametrize(
    ("retry_number", "expected_s"), [(1, 1.0), (3, 4.0), (7, 60.0)], ids=["1", "3", "7-capped"]
)
def test_zero_random_fraction_gives_exactly_the_base(retry_number: int, expected_s: float) -> None:
    assert backoff_delay_s(JITTERY, retry_number, 0.0) == expected_s


def test_full_jitter_can_shorten_to_nothing() -> None:
    policy = RetryPolicy(backoff_s=4, backoff_max_s=60, jitter=1)
    assert backoff_delay_s(policy, 1, 0.0) == 4.0
    assert backoff_delay_s(policy, 1, 0.5) == 2.0
    assert 0.0 < backoff_delay_s(policy, 1, 0.999) < 0.01
