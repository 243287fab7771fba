"""Poison tasks: handlers that kill their own process (os._exit, SIGKILL of itself, a memory
blow-up stopped by the worker's RLIMIT_AS) are retried exactly as configured, every attempt is
counted, they end `failed` with the reason, and the worker stays up serving other tasks. A task
that kills its whole worker loses nothing either: the restarted worker runs it, without spending
a retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.testing import Cluster, wait_until
from tests.helpers.postgres import postgres_url
from tests.helpers.stores import db

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOBS = "tests.helpers.chaos_jobs"
FAST_RETRY = {"backoff_s": 0.05, "backoff_max_s": 0.1}
__all__ = ["db", "postgres_url"]  # fixtures, used by name


@pytest.fixture
def cluster(tmp_path: Path, db: str | None) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db=db, lease_s=2.0, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def test_tasks_that_kill_their_process_fail_as_configured_and_the_worker_serves_on(
    cluster: Cluster,
) -> None:
    cluster.start_worker("w", concurrency=2, allow_modules=("tests",),
                         extra_args=("--memory-limit-mb", "512"))  # fmt: skip
    worker_pid = cluster.workers["w"].pid
    with Client(cluster.url) as client:
        poison = {
            "exit": client.submit(f"{JOBS}:exit_hard", 7, max_retries=2, retry=FAST_RETRY),
            "sigkill": client.submit(f"{JOBS}:kill_self"),
            "memory": client.submit(
                f"{JOBS}:grow_memory", 16, 4096, max_retries=1, retry=FAST_RETRY
            ),
        }
        healthy = [client.submit(f"{JOBS}:step", f"s{i}", None, 0.05) for i in range(20)]

        for task in [*poison.values(), *healthy]:
            assert client.result(task.id, timeout_s=60).done
        for task in healthy:
            assert client.get(task.id).state is TaskState.SUCCEEDED

        exit_hard = client.get(poison["exit"].id)
        assert (exit_hard.state, exit_hard.reason and exit_hard.reason.value) == (
            TaskState.FAILED,
            "retries_exhausted",
        )
        assert (exit_hard.attempts, exit_hard.retries_used) == (3, 2)
        assert [a.outcome and a.outcome.value for a in exit_hard.attempt_log] == ["crashed"] * 3
        assert exit_hard.error == "child process died: exited with code 7"

        sigkill = client.get(poison["sigkill"].id)
        assert (sigkill.state, sigkill.reason and sigkill.reason.value) == (
            TaskState.FAILED,
            "crashed",
        )
        assert (sigkill.attempts, sigkill.retries_used) == (1, 0)
        assert sigkill.error == "child process died: killed by SIGKILL"

        memory = client.get(poison["memory"].id)
        assert (memory.state, memory.reason and memory.reason.value) == (
            TaskState.FAILED,
            "retries_exhausted",
        )
        assert (memory.attempts, memory.retries_used) == (2, 1)
        for attempt in memory.attempt_log:
            # Python raises MemoryError when the rlimit refuses an allocation; the child could
            # also die of it. Either way the blow-up is capped and costs one retry each time.
            assert attempt.outcome is not None and attempt.outcome.value in {"failed", "crashed"}
            assert attempt.error is not None
            assert attempt.error.startswith(("MemoryError", "child process died"))

        # One worker process, one registration, all along: no poison took it down.
        assert cluster.workers["w"].poll() is None and cluster.workers["w"].pid == worker_pid
        (worker,) = client.workers()
        assert worker.state == "alive"
        every_attempt = [
            a for t in [*poison.values(), *healthy] for a in client.get(t.id).attempt_log
        ]
        assert {a.worker_id for a in every_attempt} == {worker.id}
        after = client.submit(f"{JOBS}:step", "after")
        assert client.result(after.id, timeout_s=30).state is TaskState.SUCCEEDED


def test_a_task_that_kills_its_worker_runs_again_on_the_restarted_worker_for_free(
    cluster: Cluster, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster.start_worker("w", allow_modules=("tests",))
    with Client(cluster.url) as client:
        task = client.submit(f"{JOBS}:kill_my_worker", str(markers), "bomb", max_retries=0)
        wait_until(lambda: cluster.workers["w"].poll() is not None, 30, "the worker to die")
        cluster.start_worker("w", allow_modules=("tests",))  # as its supervisor would
        outcome = client.result(task.id, timeout_s=60)
        assert outcome.state is TaskState.SUCCEEDED, outcome
        detail = client.get(task.id)
        assert [a.outcome and a.outcome.value for a in detail.attempt_log] == [
            "lost",
            "succeeded",
        ]
        assert detail.retries_used == 0, "a dead worker is not the task's fault"
