"""The state machine, table-driven: every (from, to) pair is written out here on purpose.

A change to `TRANSITIONS` must be mirrored in `EXPECTED` below, so that it is never accidental.
"""

from __future__ import annotations

import itertools

import pytest

from conveyor.core.states import (
    CANCELLABLE_STATES,
    DELETABLE_STATES,
    LIVE_STATES,
    RETRYABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    UNSUCCESSFUL_STATES,
    TaskState,
    can_transition,
)

P, Q, R = TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING
S, F, T, C = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED

# Rows: from; columns: to, in the order P Q R S F T C. 1 = allowed.
_COLUMNS = (P, Q, R, S, F, T, C)
_MATRIX = {
    #    P  Q  R  S  F  T  C
    P: (0, 1, 0, 0, 1, 0, 1),  # ready, or ends early: dependency failed / cancelled
    Q: (1, 0, 1, 0, 1, 0, 1),  # leased; back to pending; ends early
    R: (1, 1, 0, 1, 1, 1, 1),  # retry backoff, lease lost, or any ending
    S: (0, 0, 0, 0, 0, 0, 0),  # succeeded is final
    F: (1, 1, 0, 0, 0, 0, 0),  # manual retry
    T: (1, 1, 0, 0, 0, 0, 0),  # manual retry
    C: (1, 1, 0, 0, 0, 0, 0),  # manual retry
}
EXPECTED: dict[tuple[TaskState, TaskState], bool] = {
    (source, target): bool(allowed)
    for source, row in _MATRIX.items()
    for target, allowed in zip(_COLUMNS, row, strict=True)
}


def test_expected_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(TaskState, TaskState))
    assert set(TRANSITIONS) == set(TaskState)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [(s, t, a) for (s, t), a in EXPECTED.items()],
    ids=[f"{s}->{t}" for s, t in EXPECTED],
)
def test_can_transition_matches_the_table(
    source: TaskState, target: TaskState, allowed: bool
) -> None:
    assert can_transition(source, target) is allowed


@pytest.mark.parametrize("state", list(TaskState), ids=str)
def test_no_state_transitions_to_itself(state: TaskState) -> None:
    assert not can_transition(state, state)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [(P, False), (Q, False), (R, False), (S, True), (F, True), (T, True), (C, True)],
    ids=str,
)
def test_terminal_states(state: TaskState, terminal: bool) -> None:
    assert state.is_terminal is terminal
    assert (state in TERMINAL_STATES) is terminal
    assert (state in LIVE_STATES) is not terminal


def test_unsuccessful_states_are_the_terminal_ones_but_succeeded() -> None:
    assert {F, T, C} == UNSUCCESSFUL_STATES


def test_succeeded_has_no_exit() -> None:
    assert TRANSITIONS[S] == frozenset()
    assert not any(can_transition(S, target) for target in TaskState)


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES), ids=str)
def test_terminal_states_only_lead_back_to_live_waiting_states(state: TaskState) -> None:
    # A terminal state never reaches another terminal state or running directly.
    assert TRANSITIONS[state] <= {P, Q}


@pytest.mark.parametrize(
    ("state", "cancellable", "retryable", "deletable"),
    [
        (P, True, False, True),
        (Q, True, False, True),
        (R, True, False, False),
        (S, False, False, True),
        (F, False, True, True),
        (T, False, True, True),
        (C, False, True, True),
    ],
    ids=str,
)
def test_operation_sets(
    state: TaskState, cancellable: bool, retryable: bool, deletable: bool
) -> None:
    assert (state in CANCELLABLE_STATES) is cancellable
    assert (state in RETRYABLE_STATES) is retryable
    assert (state in DELETABLE_STATES) is deletable


@pytest.mark.parametrize("state", sorted(CANCELLABLE_STATES), ids=str)
def test_every_cancellable_state_may_become_cancelled(state: TaskState) -> None:
    assert can_transition(state, C)


@pytest.mark.parametrize("state", sorted(RETRYABLE_STATES), ids=str)
def test_every_retryable_state_may_go_back_to_pending_or_queued(state: TaskState) -> None:
    assert can_transition(state, P)
    assert can_transition(state, Q)
