"""Readiness, lease order, resource fit and the fencing rule."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core.models import Task
from conveyor.core.scheduling import (
    fits,
    holds_lease,
    is_due,
    merge_in_order,
    order_key,
    ready_state,
    select_for_lease,
    start_time,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
WHEN = {
    "none": None,
    "past": NOW - timedelta(seconds=1),
    "now": NOW,
    "future": NOW + timedelta(microseconds=1),
}


def make_task(
    task_id: str,
    *,
    priority: int = 0,
    seq: int = 0,
    resources: Mapping[str, float] | None = None,
    state: TaskState = TaskState.QUEUED,
    attempts: int = 0,
    worker_id: str | None = None,
) -> Task:
    return Task(
        id=task_id,
        handler="noop",
        args=[],
        kwargs={},
        queue="default",
        priority=priority,
        state=state,
        created_at=NOW,
        updated_at=NOW,
        seq=seq,
        resources=dict(resources or {}),
        attempts=attempts,
        worker_id=worker_id,
    )


def ids_of(tasks: list[Task]) -> list[str]:
    return [task.id for task in tasks]


# --- readiness ---------------------------------------------------------------------------------

READY_TABLE = [
    (0, "none", TaskState.QUEUED),
    (0, "past", TaskState.QUEUED),
    (0, "now", TaskState.QUEUED),
    (0, "future", TaskState.PENDING),
    (1, "none", TaskState.PENDING),
    (1, "past", TaskState.PENDING),
    (1, "now", TaskState.PENDING),
    (1, "future", TaskState.PENDING),
    (5, "none", TaskState.PENDING),
    (5, "future", TaskState.PENDING),
]


@pytest.mark.parametrize(
    ("deps_left", "when", "expected"),
    READY_TABLE,
    ids=[f"deps_left={d}-not_before={w}" for d, w, _ in READY_TABLE],
)
def test_ready_state(deps_left: int, when: str, expected: TaskState) -> None:
    assert ready_state(deps_left, WHEN[when], NOW) is expected


@pytest.mark.parametrize(
    ("when", "due"),
    [("none", True), ("past", True), ("now", True), ("future", False)],
    ids=["none", "past", "now", "future"],
)
def test_is_due(when: str, due: bool) -> None:
    assert is_due(WHEN[when], NOW) is due


# --- start time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (TaskSpec(handler="noop"), None),
        (TaskSpec(handler="noop", run_at=NOW + timedelta(hours=1)), NOW + timedelta(hours=1)),
        (TaskSpec(handler="noop", run_at=NOW - timedelta(hours=1)), NOW - timedelta(hours=1)),
        (TaskSpec(handler="noop", delay_s=30), NOW + timedelta(seconds=30)),
        (TaskSpec(handler="noop", delay_s=0.25), NOW + timedelta(milliseconds=250)),
        (TaskSpec(handler="noop", delay_s=0), None),
    ],
    ids=["neither", "run_at-future", "run_at-past", "delay-int", "delay-float", "delay-zero"],
)
def test_start_time(spec: TaskSpec, expected: datetime | None) -> None:
    assert start_time(spec, NOW) == expected


# --- order -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([make_task("a", priority=0, seq=1), make_task("b", priority=5, seq=2)], ["b", "a"]),
        ([make_task("a", priority=1, seq=2), make_task("b", priority=1, seq=1)], ["b", "a"]),
        (
            [
                make_task("low", priority=-3, seq=1),
                make_task("high-late", priority=9, seq=7),
                make_task("high-early", priority=9, seq=3),
                make_task("mid", priority=0, seq=2),
            ],
            ["high-early", "high-late", "mid", "low"],
        ),
    ],
    ids=["priority-desc", "ties-by-seq", "mixed"],
)
def test_order_key(tasks: list[Task], expected: list[str]) -> None:
    assert ids_of(sorted(tasks, key=order_key)) == expected


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        ([], []),
        ([[]], []),
        ([[make_task("a", seq=1)], []], ["a"]),
        (
            [
                [make_task("q1-p5", priority=5, seq=4), make_task("q1-p0", priority=0, seq=1)],
                [make_task("q2-p5", priority=5, seq=2), make_task("q2-p1", priority=1, seq=9)],
            ],
            ["q2-p5", "q1-p5", "q2-p1", "q1-p0"],
        ),
        (
            [
                [make_task("a", seq=1), make_task("d", seq=4)],
                [make_task("b", seq=2)],
                [make_task("c", seq=3), make_task("e", seq=5)],
            ],
            ["a", "b", "c", "d", "e"],
        ),
    ],
    ids=["no-lists", "one-empty", "one-task", "priority-across-queues", "seq-across-three"],
)
def test_merge_in_order(lists: list[list[Task]], expected: list[str]) -> None:
    merged = merge_in_order(lists)
    assert ids_of(merged) == expected
    assert merged == sorted(merged, key=order_key)


# --- resource fit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "free", "expected"),
    [
        ({}, {}, True),
        ({}, {"gpu": 1}, True),
        ({"gpu": 0}, {}, True),
        ({"gpu": 1}, {"gpu": 1}, True),
        ({"gpu": 1, "cpu": 2}, {"gpu": 1, "cpu": 4, "ram": 8}, True),
        ({"gpu": 1}, {"gpu": 0.5}, False),
        ({"gpu": 1}, {}, False),
        ({"gpu": 1}, {"cpu": 8}, False),
        ({"gpu": 1, "cpu": 2}, {"gpu": 1, "cpu": 1}, False),
        ({"gpu": 1}, {"gpu": -1}, False),
    ],
    ids=[
        "none-of-nothing",
        "none-of-some",
        "zero-amount-ignored",
        "exact-fit",
        "several-fit",
        "insufficient",
        "absent-resource",
        "other-resource",
        "one-of-two-short",
        "overcommitted",
    ],
)
def test_fits(required: dict[str, float], free: dict[str, float], expected: bool) -> None:
    assert fits(required, free) is expected


GPU1 = {"gpu": 1}
GPU2 = {"gpu": 2}
SELECT_TABLE: list[tuple[str, list[Task], int, dict[str, float] | None, list[str]]] = [
    ("no-candidates", [], 5, {"gpu": 1}, []),
    ("no-resources-all-taken", [make_task("a"), make_task("b")], 5, {}, ["a", "b"]),
    ("exact-fit", [make_task("a", resources=GPU2)], 5, {"gpu": 2}, ["a"]),
    ("insufficient", [make_task("a", resources=GPU2)], 5, {"gpu": 1}, []),
    (
        "cumulative-subtraction",
        [
            make_task("a", resources=GPU1),
            make_task("b", resources=GPU1),
            make_task("c", resources=GPU1),
        ],
        5,
        {"gpu": 2},
        ["a", "b"],
    ),
    (
        "skip-big-take-small",
        [make_task("big", resources=GPU2), make_task("small", resources=GPU1), make_task("free")],
        5,
        {"gpu": 1},
        ["small", "free"],
    ),
    (
        "free-none-only-resource-free-tasks",
        [make_task("a", resources=GPU1), make_task("b"), make_task("c", resources={"gpu": 0})],
        5,
        None,
        ["b", "c"],
    ),
    ("max-tasks-bound", [make_task(x) for x in "abcde"], 3, {}, ["a", "b", "c"]),
    ("max-tasks-zero", [make_task("a")], 0, {}, []),
    (
        "max-tasks-counts-chosen-only",
        [make_task("x", resources=GPU2), make_task("a"), make_task("b")],
        2,
        {"gpu": 1},
        ["a", "b"],
    ),
    ("order-preserved", [make_task(x) for x in "zyx"], 10, None, ["z", "y", "x"]),
    (
        "mixed-resources",
        [
            make_task("a", resources={"gpu": 1, "cpu": 2}),
            make_task("b", resources={"cpu": 3}),
            make_task("c", resources={"cpu": 2}),
            make_task("d", resources={"gpu": 1}),
        ],
        10,
        {"gpu": 1, "cpu": 4},
        ["a", "c"],
    ),
]


@pytest.mark.parametrize(
    ("candidates", "max_tasks", "free", "expected"),
    [row[1:] for row in SELECT_TABLE],
    ids=[row[0] for row in SELECT_TABLE],
)
def test_select_for_lease(
    candidates: list[Task], max_tasks: int, free: dict[str, float] | None, expected: list[str]
) -> None:
    before = None if free is None else dict(free)
    assert ids_of(select_for_lease(candidates, max_tasks, free)) == expected
    assert free == before  # the caller's free resources are not mutated


# --- fencing -----------------------------------------------------------------------------------

HOLDS_TABLE = [
    ("current-lease", TaskState.RUNNING, 3, "w1", "w1", 3, True),
    ("stale-token", TaskState.RUNNING, 3, "w1", "w1", 2, False),
    ("future-token", TaskState.RUNNING, 3, "w1", "w1", 4, False),
    ("other-worker", TaskState.RUNNING, 3, "w1", "w2", 3, False),
    ("no-worker", TaskState.RUNNING, 3, None, "w1", 3, False),
    ("requeued", TaskState.QUEUED, 3, "w1", "w1", 3, False),
    ("pending", TaskState.PENDING, 3, "w1", "w1", 3, False),
    ("already-succeeded", TaskState.SUCCEEDED, 3, "w1", "w1", 3, False),
    ("already-failed", TaskState.FAILED, 3, "w1", "w1", 3, False),
    ("cancelled", TaskState.CANCELLED, 3, "w1", "w1", 3, False),
]


@pytest.mark.parametrize(
    ("state", "attempts", "holder", "worker", "token", "expected"),
    [row[1:] for row in HOLDS_TABLE],
    ids=[row[0] for row in HOLDS_TABLE],
)
def test_holds_lease(
    state: TaskState,
    attempts: int,
    holder: str | None,
    worker: str,
    token: int,
    expected: bool,
) -> None:
    task = make_task("t", state=state, attempts=attempts, worker_id=holder)
    assert task.token == attempts
    assert holds_lease(task, worker, token) is expected
