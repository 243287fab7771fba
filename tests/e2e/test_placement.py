"""Placement with real workers: a task waits for a worker that can run it instead of failing on
the first one that could lease it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.testing import Cluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def test_a_shell_task_waits_until_a_worker_that_allows_shell_joins(cluster: Cluster) -> None:
    with Client(cluster.url) as client:
        cluster.start_worker("plain", concurrency=2)
        shell_task = client.submit("shell", ["echo", "from the shell worker"], max_retries=0)
        echo_task = client.submit("echo", "anyone")
        assert client.result(echo_task.id, timeout_s=30).state is TaskState.SUCCEEDED
        # The plain worker has long-polled past it meanwhile: it took the echo, not the shell.
        time.sleep(1.5)
        waiting = client.get(shell_task.id)
        assert (waiting.state, waiting.attempts, waiting.retries_used) == (TaskState.QUEUED, 0, 0)

        cluster.start_worker("sheller", extra_args=["--allow", "shell"])
        outcome = client.result(shell_task.id, timeout_s=30)
        assert outcome.state is TaskState.SUCCEEDED, outcome
        assert "from the shell worker" in str(outcome.result)
        done = client.get(shell_task.id)
        assert done.attempts == 1
        sheller = next(w for w in client.workers() if w.name == "sheller")
        assert [a.worker_id for a in done.attempt_log] == [sheller.id]
        assert sheller.capabilities is not None and sheller.capabilities.shell
