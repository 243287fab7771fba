"""The ledger checker on hand-made ledgers: each violation it must name, and what it must allow."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.ledger import (
    CATEGORIES,
    AttemptRecord,
    ExecutionLedger,
    ExecutionRecord,
    SubmitLedger,
    SubmitRecord,
    TaskRecord,
    check,
    fetch_tasks,
    read_executions,
    read_submits,
    result_digest,
)
from conveyor.testing import Cluster
from tests.unit.test_client import URL, task_json

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LEASE_S = 2.0
W1, W2 = "worker-1", "worker-2"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def attempt(
    number: int,
    worker: str,
    start: float,
    end: float | None,
    outcome: str | None,
    *,
    expires: float | None = None,
    error: str | None = None,
) -> AttemptRecord:
    return AttemptRecord(
        number=number,
        worker_id=worker,
        started_at=at(start),
        lease_expires_at=at(expires if expires is not None else start + LEASE_S),
        finished_at=at(end) if end is not None else None,
        outcome=outcome,
        error=error,
    )


def run(
    token: int,
    worker: str,
    start: float,
    end: float | None = None,
    outcome: str = "succeeded",
    *,
    result: object = "r",
    task: str = "t1",
    pid: int = 100,
) -> list[ExecutionRecord]:
    """The start line, and the end line unless the execution was cut off (end=None)."""
    common = {"task_id": task, "token": token, "worker_id": worker, "worker_name": worker}
    lines = [ExecutionRecord(event="start", pid=pid, started_at=at(start), **common)]
    if end is not None:
        lines.append(
            ExecutionRecord(
                event="end",
                pid=pid,
                started_at=at(start),
                finished_at=at(end),
                outcome=outcome,
                reported=True,
                result_digest=result_digest(result) if outcome == "succeeded" else None,
                **common,
            )
        )
    return lines


def task(*attempts: AttemptRecord, state: str = "succeeded", result: object = "r") -> TaskRecord:
    return TaskRecord(id="t1", state=state, result=result, attempts=attempts)


def counts(report) -> dict[str, int]:
    return {c: len(report.findings(c)) for c in CATEGORIES if report.findings(c)}


SUBMITTED = [SubmitRecord("t1", "k1")]

# (case, executions, final task, the violations expected by category)
CASES = [
    (
        "a clean run",
        run(1, W1, 0, 1),
        task(attempt(1, W1, 0, 1.1, "succeeded")),
        {},
    ),
    (
        "a worker killed, its lease expired, the task run again",
        run(1, W1, 0) + run(2, W2, 2.6, 3),
        task(
            attempt(1, W1, 0, 2.5, "lost", expires=2.4, error="lease expired"),
            attempt(2, W2, 2.55, 3.1, "succeeded"),
        ),
        {},
    ),
    (
        "a zombie still running after its lease expired (tolerated), its report refused",
        run(1, W1, 0, 5, result="zombie's") + run(2, W2, 2.6, 3),
        task(
            attempt(1, W1, 0, 2.5, "lost", expires=2.4, error="lease expired"),
            attempt(2, W2, 2.55, 3.1, "succeeded"),
        ),
        {},
    ),
    (
        "a dead worker's task run again once its lease expired",
        run(1, W1, 0) + run(2, W2, 4.2, 5),
        task(
            attempt(1, W1, 0, 4.1, "lost", expires=4, error="worker stopped heartbeating"),
            attempt(2, W2, 4.15, 5.1, "succeeded"),
        ),
        {},
    ),
    (
        "a dead worker's task run again before its lease expiry",
        run(1, W1, 0) + run(2, W2, 1.2, 2),
        task(
            attempt(1, W1, 0, 1.0, "lost", expires=4, error="worker stopped heartbeating"),
            attempt(2, W2, 1.1, 2.1, "succeeded"),
        ),
        {"early_starts": 2},  # the dead sweep itself, and the execution inside the lease
    ),
    (
        "a second execution inside the first one's extended lease",
        run(1, W1, 0) + run(2, W2, 3.0, 3.5),
        task(
            attempt(1, W1, 0, 3.9, "lost", expires=3.8, error="lease expired"),
            attempt(2, W2, 2.9, 3.6, "succeeded"),
        ),
        {"early_starts": 1},
    ),
    (
        "a lease expired before its (extended) expiry",
        run(1, W1, 0) + run(2, W2, 2.1, 2.5),
        task(
            attempt(1, W1, 0, 2.0, "lost", expires=3.8, error="lease expired"),
            attempt(2, W2, 2.05, 2.6, "succeeded"),
        ),
        {"early_starts": 2},  # the expiry itself, and the execution inside the lease
    ),
    (
        "a second grant while the first attempt never ended",
        run(1, W1, 0, 9) + run(2, W2, 1, 1.5),
        task(attempt(1, W1, 0, None, None, expires=10), attempt(2, W2, 1, 1.6, "succeeded")),
        {"early_starts": 2},
    ),
    (
        "a stale execution started inside a later attempt's lease",
        run(1, W1, 3.0, 3.2) + run(2, W2, 2.6, 4),
        task(
            attempt(1, W1, 0, 2.5, "lost", expires=2.4, error="lease expired"),
            attempt(2, W2, 2.55, 4.1, "succeeded"),
        ),
        {"early_starts": 1},
    ),
    (
        "two succeeded attempts",
        run(1, W1, 0, 1) + run(2, W2, 2, 3),
        task(attempt(1, W1, 0, 1.1, "succeeded"), attempt(2, W2, 2, 3.1, "succeeded")),
        {"recorded_twice": 2},  # two successes, and an attempt after the success
    ),
    (
        "the recorded result is not the one the recorded attempt produced",
        run(1, W1, 0, 1, result="mine"),
        task(attempt(1, W1, 0, 1.1, "succeeded"), result="someone else's"),
        {"recorded_twice": 1},
    ),
    (
        "recorded succeeded, but its execution failed",
        run(1, W1, 0, 1, outcome="failed"),
        task(attempt(1, W1, 0, 1.1, "succeeded")),
        {"misrecorded": 1},
    ),
    (
        "an execution of a token the server never granted",
        run(1, W1, 0, 1) + run(2, W2, 1.5, 1.8),
        task(attempt(1, W1, 0, 1.1, "succeeded")),
        {"unaccounted_executions": 1},
    ),
    (
        "one lease executed by two processes",
        run(1, W1, 0, 1) + run(1, W1, 0.5, 0.9, pid=200),
        task(attempt(1, W1, 0, 1.1, "succeeded")),
        {"executed_twice": 1},
    ),
    (
        "one lease started twice by one process",
        run(1, W1, 0, 1) + run(1, W1, 0.5)[:1],
        task(attempt(1, W1, 0, 1.1, "succeeded")),
        {"executed_twice": 1},
    ),
    (
        "acknowledged, never finished",
        run(1, W1, 0),
        task(attempt(1, W1, 0, None, None), state="running", result=None),
        {"stuck": 1},
    ),
    (
        "acknowledged, left queued",
        [],
        task(state="queued", result=None),
        {"stuck": 1},
    ),
    (
        "a deregistered worker's task run again at once (its lease ended with it)",
        run(1, W1, 0, 1.5, result="late") + run(2, W2, 0.6, 1),
        task(
            attempt(1, W1, 0, 0.5, "lost", error="worker deregistered"),
            attempt(2, W2, 0.55, 1.1, "succeeded"),
        ),
        {},
    ),
]


@pytest.mark.parametrize(
    ("executions", "final", "expected"),
    [pytest.param(e, f, x, id=case) for case, e, f, x in CASES],
)
def test_the_checker_names_each_violation(
    executions: list[ExecutionRecord], final: TaskRecord, expected: dict[str, int]
) -> None:
    report = check(SUBMITTED, executions, {"t1": final}, LEASE_S)
    assert counts(report) == expected, report.summary()
    assert report.ok is (not expected)


def test_missing_and_unacknowledged_tasks() -> None:
    other = TaskRecord(id="t9", state="succeeded", attempts=[attempt(1, W1, 0, 1, "succeeded")])
    report = check(
        [SubmitRecord("t1", "k1"), SubmitRecord("t2", "k2"), SubmitRecord("t3", "k2")],
        run(1, W1, 0, 1, task="t9") + run(1, W1, 0, 1, task="t7"),
        {"t9": other},
        LEASE_S,
    )
    assert {f.task_id for f in report.lost} == {"t1", "t2", "t3"}
    # t9 in the database and t7 executed, neither acknowledged; key k2 acknowledged twice
    assert sorted(f.task_id for f in report.unexpected) == ["t3", "t7", "t9"]


def test_figures_count_executions_overlaps_and_outcomes() -> None:
    report = check(
        SUBMITTED,
        run(1, W1, 0, 5, result="zombie's") + run(2, W2, 2.6, 3) + run(3, W1, 9),
        {
            "t1": task(
                attempt(1, W1, 0, 2.5, "lost", expires=2.4, error="lease expired"),
                attempt(2, W2, 2.55, 3.1, "succeeded"),
            )
        },
        LEASE_S,
    )
    assert report.figures["executions"] == 3
    assert report.figures["executions_cut_off"] == 1
    assert report.figures["overlapping_executions"] == 2
    assert report.figures["attempts_lost"] == report.figures["attempts_expired"] == 1
    assert report.final_states == {"succeeded": 1}
    assert [f.detail for f in report.unaccounted_executions] == [
        "token 3 executed, but the server has no such attempt"
    ]


def test_ledgers_round_trip_through_files_and_survive_a_torn_last_line(tmp_path: Path) -> None:
    ledger = ExecutionLedger(tmp_path, "host/w 1", 42)
    ledger.started("t1", 1, W1, at(0))
    ledger.ended("t1", 1, W1, started_at=at(0), finished_at=at(1), outcome="succeeded",
                 reported=True, result={"b": 1, "a": [1.5, "x"]})  # fmt: skip
    ledger.started("t2", 1, W1, at(2))
    ledger.close()
    assert ledger.path.name == "host_w_1-42.jsonl"
    with ledger.path.open("a") as f:
        f.write('{"event": "start", "task_id": "t3"')  # a kill in the middle of a line
    lines = read_executions(tmp_path)
    assert [(r.event, r.task_id) for r in lines] == [
        ("start", "t1"),
        ("end", "t1"),
        ("start", "t2"),
    ]
    assert lines[1].result_digest == result_digest({"a": [1.5, "x"], "b": 1})
    assert lines[1].finished_at == at(1) and lines[1].reported is True

    submits = SubmitLedger(tmp_path / "submits.jsonl")
    submits.record("t1", "k1")
    submits.record_all([TaskRecord(id="t2", state="queued", key=None)])
    submits.close()
    assert read_submits(tmp_path / "submits.jsonl") == [
        SubmitRecord("t1", "k1"),
        SubmitRecord("t2", None),
    ]


@pytest.mark.slow
def test_the_command_line_checks_a_real_run_and_fails_on_a_lost_task(tmp_path: Path) -> None:
    ledger, submits_path = tmp_path / "ledger", tmp_path / "submits.jsonl"
    cluster = Cluster(tmp_path, cwd=ROOT)
    try:
        cluster.start_server()
        cluster.start_worker("w", extra_args=("--ledger", str(ledger)))
        with Client(cluster.url) as client, SubmitLedger(submits_path) as submits:
            tasks = client.submit_batch([TaskSpec(handler="echo", args=[i]) for i in range(5)])
            submits.record_all(tasks)
            for task in tasks:
                assert client.result(task.id, timeout_s=30).state is TaskState.SUCCEEDED
        command = [sys.executable, "-m", "conveyor.ledger", "check", "--ledger", str(ledger),
                   "--submits", str(submits_path), "--server", cluster.url, "--lease-s", "3"]  # fmt: skip
        ok = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.rstrip().endswith("OK")
        assert '"executions": 5' in ok.stdout

        with SubmitLedger(submits_path) as submits:
            submits.record("never-stored", "k")  # acknowledged, yet the server has no such task
        lost = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert lost.returncode == 1
        assert "lost: task never-stored: acknowledged, but not in the database" in lost.stdout
    finally:
        cluster.stop()


def test_the_final_records_are_read_through_a_busy_server() -> None:
    """Right after the faults stop, a read may meet a dead pooled database connection (503) or
    a server still restarting: the checker reads again instead of failing the run."""
    answered: set[str] = set()

    def server(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path not in answered:  # every read is refused once, as busy
            answered.add(path)
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy"})
        if path == "/api/v1/tasks":
            return httpx.Response(200, json={"tasks": [task_json("t1")], "next_cursor": None})
        return httpx.Response(200, json={**task_json("t1", state="succeeded"), "attempt_log": []})

    tasks = fetch_tasks(URL, transport=httpx.MockTransport(server), connections=1)

    assert set(tasks) == {"t1"} and tasks["t1"].state == "succeeded"
    assert answered == {"/api/v1/tasks", "/api/v1/tasks/t1"}
