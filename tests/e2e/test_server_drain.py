"""Drain and stop from the server, obeyed by real worker processes.

A drained worker leases nothing more, lets its running task finish and exits 0; a stopped one
kills its running task, hands it back without spending a retry, and exits long before the task
would have ended. Both deregister, and the work left runs on a worker that joins later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.testing import Cluster, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOBS = "tests.helpers.chaos_jobs"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, lease_s=3.0, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def _worker_id(client: Client, name: str) -> str:
    (worker,) = [w for w in client.workers() if w.name == name and w.state == "alive"]
    return worker.id


def _running(client: Client, task_id: str) -> bool:
    return client.get(task_id).state == TaskState.RUNNING


def test_a_drained_worker_finishes_its_task_leases_no_more_and_exits(
    cluster: Cluster, tmp_path: Path
) -> None:
    with Client(cluster.url) as client:
        first = client.submit(TaskSpec(handler=f"{JOBS}:step", args=["first", None, 2.0]))
        cluster.start_worker("drained", allow_modules=("tests",))
        wait_until(lambda: _running(client, first.id), 30, "the first task to start")
        second = client.submit(TaskSpec(handler=f"{JOBS}:step", args=["second", None, 0.0]))

        told = client.drain_workers(queue="default")

        assert [w.name for w in told] == ["drained"]
        assert cluster.workers["drained"].wait(30) == 0
        done = client.get(first.id)
        assert done.state == TaskState.SUCCEEDED and done.attempts == 1
        assert client.get(second.id).state == TaskState.QUEUED  # not leased while draining
        assert all(w.name != "drained" or w.state != "alive" for w in client.workers())

        cluster.start_worker("next", allow_modules=("tests",))
        assert client.result(second.id, timeout_s=30).state == TaskState.SUCCEEDED


def test_a_stopped_worker_hands_its_task_back_at_once_without_spending_a_retry(
    cluster: Cluster, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with Client(cluster.url) as client:
        task = client.submit(
            TaskSpec(
                handler=f"{JOBS}:long_first_time",
                args=[str(markers), "long", 120],
                max_retries=0,  # a spent retry would fail it
            )
        )
        cluster.start_worker("stopped", allow_modules=("tests",), extra_args=["--grace-s", "60"])
        wait_until(lambda: (markers / "long.pid").exists(), 30, "the long task to start")

        told = client.stop_workers([_worker_id(client, "stopped")])

        assert [w.name for w in told] == ["stopped"]
        # Well within the worker's 60 s grace period and the task's 120 s: handed back, not
        # waited for.
        assert cluster.workers["stopped"].wait(20) == 0
        back = client.get(task.id)
        assert back.state in (TaskState.QUEUED, TaskState.PENDING), back.state

        cluster.start_worker("next", allow_modules=("tests",))
        result = client.result(task.id, timeout_s=30)
        assert result.state == TaskState.SUCCEEDED
