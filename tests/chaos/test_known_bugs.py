"""Conveyor bugs the fault matrix found, each reproduced on purpose, quickly and every time.

Each test states the designed behaviour and is marked xfail(strict=True) with the reproduction
in its reason: it fails today, which the suite expects; the day the bug is fixed it passes, and
strict xfail turns that into a failure, so that whoever fixed it removes the mark here and the
entry in tests/helpers/known_bugs.py (and lets the matrix run the poison again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.ledger import (
    AttemptRecord,
    ExecutionRecord,
    SubmitRecord,
    TaskRecord,
    check,
    fetch_tasks,
    read_executions,
)
from conveyor.testing import Cluster, wait_until
from tests.helpers.known_bugs import explained_by
from tests.helpers.workload import JOBS, KNOWN_WORKER_KILLERS, poison_spec

ROOT = Path(__file__).resolve().parents[2]


def _at(seconds: float) -> datetime:
    return datetime(2026, 12, 7, tzinfo=UTC) + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("ended_by", "explained"),
    [
        ("worker deregistered", True),
        ("lease expired", False),
        ("worker stopped heartbeating", False),
    ],
)
def test_only_a_stale_start_after_a_deregistration_is_put_down_to_the_known_bug(
    ended_by: str, explained: bool
) -> None:
    # Attempt 1 (w1) ended at 1.0 s, attempt 2 (w2) granted at 1.05 s; w1 starts its stale
    # execution of token 1 at 1.5 s, inside attempt 2's lease.
    final = TaskRecord(
        id="t1",
        state="succeeded",
        result="r",
        attempts=[
            AttemptRecord(1, "w1", _at(0), _at(1.0), _at(1.0), "lost", ended_by),
            AttemptRecord(2, "w2", _at(1.05), _at(3.05), _at(3.1), "succeeded"),
        ],
    )
    stale = ExecutionRecord("start", "t1", 1, "w1", "w1", 100, _at(1.5))
    report = check([SubmitRecord("t1")], [stale], {"t1": final}, 2.0)
    (finding,) = report.early_starts
    assert (explained_by("early_starts", finding, final) is not None) is explained, finding


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="Known bug (engine: deregister_worker re-queues unexpired leases at once). A worker "
    "deregistered by an admin while it holds a prefetched lease starts that task when a slot "
    "frees, before it learns it was deregistered, while another worker holds the task's new "
    "lease. Found by the fault matrix (seed 20261122, SQLite: `python scripts/chaos.py --tasks "
    "600 --single-tasks 200 --submit-threads 4 --submit-s 20 --fault-s 30 --server-kills 1 "
    "--disk-mb 64`), checker: 'execution of token 1 on chaos-w0 started 0.096s before a later "
    "attempt 3's lease ended'. Reproduced here every time.",
)
@pytest.mark.timeout(120)
def test_a_deregistered_worker_never_starts_a_task_it_had_prefetched(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    # Heartbeats every 5 s: the worker learns of its deregistration that late, at the latest.
    cluster = Cluster(tmp_path, cwd=ROOT, lease_s=10, server_args=["--heartbeat-s", "5"])
    args = ["--ledger", str(ledger), "--prefetch", "1"]
    try:
        cluster.start_server()
        cluster.start_worker("w1", concurrency=1, allow_modules=("tests",), extra_args=args)
        with Client(cluster.url) as client:
            busy = client.submit(TaskSpec(handler=f"{JOBS}:step", args=["busy", None, 3.0]))
            prefetched = client.submit(TaskSpec(handler=f"{JOBS}:step", args=["next", None, 2.0]))
            # Both leased to w1: one runs, the other waits in its prefetch for the slot.
            wait_until(
                lambda: client.get(prefetched.id).state.value == "running", 10, "the prefetch"
            )
            w1 = client.get(prefetched.id).worker_id
            assert client.get(busy.id).worker_id == w1
            cluster.start_worker("w2", concurrency=1, allow_modules=("tests",), extra_args=args)
            # An admin deregisters w1 while `busy` runs: both tasks go back to the queue and w2
            # takes them. When `busy` ends on w1, w1 must not start `prefetched`.
            assert httpx.delete(f"{cluster.url}/api/v1/workers/{w1}", timeout=5).is_success
            for task in (busy, prefetched):
                assert client.result(task.id, timeout_s=30).state.value == "succeeded"
        for name in ("w1", "w2"):
            cluster.stop_worker(name)
        tasks = fetch_tasks(cluster.url)
        submitted = [SubmitRecord(busy.id), SubmitRecord(prefetched.id)]
        report = check(submitted, read_executions(ledger), tasks, lease_s=10)
        assert not report.early_starts, report.summary()
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "surrogate_result",
            marks=pytest.mark.xfail(
                strict=True,
                reason="Known bug (worker/client): a task returning a string with a lone "
                "surrogate (say, a file name read with surrogateescape) kills its worker's "
                "reporter thread: pydantic cannot serialize the report "
                "(PydanticSerializationError: 'utf-8' codec can't encode character '\\ud800'), "
                "so the worker stops; the task goes back to the queue and stops the next "
                "worker, until the delivery limit.",
            ),
        ),
        pytest.param(
            "too_large_result",
            marks=pytest.mark.xfail(
                strict=True,
                reason="Known bug (worker): a task returning more than 1 MiB of result makes "
                "the worker's main loop build a ReportIn whose validator refuses it "
                "('result is 2,097,176 bytes as JSON; at most 1,048,576 are allowed'): the "
                "worker exits, the task goes back to the queue and stops the next worker, until "
                "the delivery limit.",
            ),
        ),
    ],
)
@pytest.mark.timeout(60)
def test_a_result_no_store_can_keep_fails_its_task_not_its_worker(
    tmp_path: Path, kind: str
) -> None:
    assert kind in KNOWN_WORKER_KILLERS  # left out of the matrix until this passes
    cluster = Cluster(tmp_path, cwd=ROOT)
    try:
        cluster.start_server()
        cluster.start_worker("w", concurrency=1, allow_modules=("tests",))
        with Client(cluster.url) as client:
            poison = client.submit(poison_spec(kind, kind))
            answer = client.result(poison.id, timeout_s=10)
            assert answer.state.value == "failed", f"still {answer.state.value}"
            error = client.get(poison.id).error or ""
            assert "result" in error.lower(), error
            after = client.submit(TaskSpec(handler="echo", args=["after"]))
            assert client.result(after.id, timeout_s=10).result == "after"
            assert client.get(after.id).worker_id == client.get(poison.id).worker_id
            assert cluster.workers["w"].poll() is None, "the worker is still running"
    finally:
        cluster.stop()
