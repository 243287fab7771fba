"""Prefetch never strands work: a task a busy worker prefetched goes to an idle worker soon,
not when one of the busy worker's long tasks ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.testing import Cluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LONG_S = 10.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def test_a_task_prefetched_behind_long_tasks_runs_on_a_worker_that_joins_later(
    cluster: Cluster,
) -> None:
    with Client(cluster.url) as client:
        first, second, short = client.submit_batch([
            TaskSpec(handler="sleep", args=[LONG_S], priority=2, name="long-1"),
            TaskSpec(handler="sleep", args=[LONG_S], priority=2, name="long-2"),
            TaskSpec(handler="echo", args=["short"], priority=1, name="short"),
        ])  # fmt: skip
        # Two slots and, before any task has ended, one prefetched: `busy` leases all three.
        cluster.start_worker("busy", concurrency=2)
        busy = next(w for w in client.workers() if w.name == "busy")
        deadline = time.monotonic() + 10
        while client.get(short.id).state is not TaskState.RUNNING:
            assert time.monotonic() < deadline, "the busy worker never prefetched the short task"
            time.sleep(0.05)
        assert client.get(short.id).attempt_log[0].worker_id == busy.id

        cluster.start_worker("idle", concurrency=1)
        joined = time.monotonic()
        outcome = client.result(short.id, timeout_s=30)
        waited_s = time.monotonic() - joined
        assert outcome.state is TaskState.SUCCEEDED
        assert waited_s < LONG_S / 2, f"the short task waited {waited_s:.1f}s behind long ones"
        done = client.get(short.id)
        idle = next(w for w in client.workers() if w.name == "idle")
        assert [a.worker_id for a in done.attempt_log][-1] == idle.id
        assert done.retries_used == 0
        assert {a.outcome for a in done.attempt_log[:-1]} <= {Outcome.HANDED_BACK}
        assert client.get(first.id).state is TaskState.RUNNING, "the long tasks run on"
        for task in (first, second):
            assert client.result(task.id, timeout_s=30).state is TaskState.SUCCEEDED
