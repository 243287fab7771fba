"""The embedded Scheduler end to end: real child processes, a real SQLite file."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.core.states import TaskState
from conveyor.embedded import Job, Progress, Scheduler
from conveyor.engine import EngineSettings
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError

FAST = EngineSettings(lease_s=5, heartbeat_interval_s=0.2, worker_dead_after_s=2)
STEP = "tests.helpers.ledger_jobs:step"


@pytest.fixture
def scheduler(tmp_path: Path) -> Scheduler:
    with Scheduler(tmp_path / "jobs.db", concurrency=4, settings=FAST, poll_interval_s=0.05) as s:
        yield s  # type: ignore[misc]


def by_name(scheduler: Scheduler) -> dict[str, object]:
    return {t.name: t for t in scheduler.tasks()}


def test_pipeline_passes_results_downstream(scheduler: Scheduler) -> None:
    scheduler.add(Job("echo", name="text", args=["abc"]))
    scheduler.add(Job("sha256", name="digest", args=[{"$result": "text"}]))
    scheduler.add(
        Job("echo", name="report", kwargs={"t": {"$result": "text"}, "d": {"$result": "digest"}})
    )
    summary = scheduler.run_until_complete(timeout_s=30)
    assert summary.ok
    report = scheduler.get(scheduler.tasks(state=TaskState.SUCCEEDED)[0].id)
    assert report.name == "report"
    assert report.result == {
        "t": "abc",
        "d": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }


def test_timeout_kills_and_records_timed_out(scheduler: Scheduler) -> None:
    task_id = scheduler.add(Job("sleep", name="slow", args=[30], timeout_s=0.3))
    summary = scheduler.run_until_complete(timeout_s=30)
    assert summary.elapsed_s < 10
    task = scheduler.get(task_id)
    assert task.state is TaskState.TIMED_OUT
    (attempt,) = scheduler.engine.attempts(task_id)
    assert attempt.outcome is not None and attempt.outcome.value == "timed_out"


def test_failures_retry_with_backoff_then_fail(scheduler: Scheduler) -> None:
    task_id = scheduler.add(
        Job(
            "fail",
            name="doomed",
            args=["nope"],
            max_retries=2,
            retry={"backoff_s": 0.05, "jitter": 0},
        )
    )
    scheduler.add(Job("echo", name="child", args=[1], depends_on=["doomed"]))
    summary = scheduler.run_until_complete(timeout_s=30)
    assert not summary.ok
    task = scheduler.get(task_id)
    assert (task.state, task.attempts, task.retries_used) == (TaskState.FAILED, 3, 2)
    assert "nope" in (task.error or "")
    attempts = scheduler.engine.attempts(task_id)
    assert all(a.traceback and "RuntimeError: nope" in a.traceback for a in attempts)
    gaps = [
        (b.started_at - a.finished_at).total_seconds()
        for a, b in itertools.pairwise(attempts)
        if a.finished_at
    ]
    assert gaps[1] >= 0.1 - 0.02, "second backoff should be about twice the first"
    child = by_name(scheduler)["child"]
    assert child.state is TaskState.FAILED and child.reason.value == "dependency_failed"  # type: ignore[attr-defined]


def test_run_at_is_respected(scheduler: Scheduler) -> None:
    start = datetime.now(UTC) + timedelta(seconds=0.5)
    task_id = scheduler.add(Job("echo", name="later", args=[1], run_at=start))
    assert scheduler.run_until_complete(timeout_s=30).ok
    task = scheduler.get(task_id)
    assert task.started_at is not None and task.started_at >= start


def test_priority_order_with_one_slot(tmp_path: Path) -> None:
    # The order the jobs ran in, as they record it: the worker may lease a job beyond its one
    # slot (prefetch), so two jobs can share a lease time (`started_at`).
    ledger = tmp_path / "ledger.txt"
    with Scheduler(tmp_path / "p.db", concurrency=1, settings=FAST) as s:
        s.add_all(
            [Job(STEP, name=f"p{p}", args=[str(ledger), f"p{p}", 0], priority=p) for p in (1, 5, 3)]
        )
        assert s.run_until_complete(timeout_s=30).ok
    starts = [line.split()[1] for line in ledger.read_text().splitlines() if "start" in line]
    assert starts == ["p5", "p3", "p1"]


def test_adding_a_named_job_twice_returns_the_first(scheduler: Scheduler) -> None:
    first = scheduler.add(Job("echo", name="once", args=[1]))
    again = scheduler.add(Job("echo", name="once", args=[1]))
    assert first == again and len(scheduler.tasks()) == 1


def test_depends_on_names_a_job_added_earlier(scheduler: Scheduler) -> None:
    scheduler.add(Job("echo", name="a", args=[1]))
    b = scheduler.add(Job("echo", name="b", args=[2], depends_on=["a"]))
    assert scheduler.get(b).state is TaskState.PENDING
    assert scheduler.run_until_complete(timeout_s=30).ok


def test_cancel_running_job_kills_it(scheduler: Scheduler) -> None:
    task_id = scheduler.add(Job("sleep", name="long", args=[30]))
    started = threading.Event()

    def watch(progress: Progress) -> None:
        if progress.counts.get(TaskState.RUNNING) and not started.is_set():
            started.set()
            scheduler.cancel(task_id)

    summary = scheduler.run_until_complete(watch, timeout_s=30)
    assert started.is_set()
    assert summary.elapsed_s < 10, "the cancelled child was not killed"
    assert scheduler.get(task_id).state is TaskState.CANCELLED


def test_status_remove_and_errors(scheduler: Scheduler) -> None:
    done = scheduler.add(Job("echo", name="x", args=[1]))
    scheduler.run_until_complete(timeout_s=30)
    assert scheduler.status() == {"succeeded": 1}
    with pytest.raises(ConflictError):
        scheduler.cancel(done)
    scheduler.remove(done)
    with pytest.raises(NotFoundError):
        scheduler.get(done)
    with pytest.raises(InvalidSpecError):
        scheduler.add(Job("echo", name="y", depends_on=["no-such-job"]))


def test_job_from_a_function_and_refused_main_functions() -> None:
    job = Job(test_status_remove_and_errors)
    assert job.handler.endswith(":test_status_remove_and_errors")
    with pytest.raises(ValueError, match="module level"):
        Job(lambda: 1)


def test_job_needing_resources_it_cannot_have_is_reported_stuck(scheduler: Scheduler) -> None:
    scheduler.add(Job("echo", name="gpu-job", args=[1], resources={"gpu": 1}))
    summary = scheduler.run_until_complete(timeout_s=30)
    assert not summary.ok and [t.name for t in summary.stuck] == ["gpu-job"]
