"""Bugs the fault matrix found, each reproduced on purpose, quickly and every time, now fixed.

Each test states the designed behaviour. A bug the matrix finds and that is not fixed yet gets
its test here marked xfail(strict=True), with the reproduction in its reason, and an entry in
tests/helpers/known_bugs.py so that the matrix counts its findings apart; the day it is fixed
the test passes, strict xfail turns that into a failure, and whoever fixed it removes both.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.ledger import (
    SubmitRecord,
    check,
    fetch_tasks,
    read_executions,
)
from conveyor.testing import Cluster, wait_until
from tests.helpers.workload import JOBS, POISONS, poison_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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
        "surrogate_result",
        "too_large_result",
    ],
)
@pytest.mark.timeout(60)
def test_a_result_no_store_can_keep_fails_its_task_not_its_worker(
    tmp_path: Path, kind: str
) -> None:
    assert kind in POISONS  # in the matrix too
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
