"""Graceful shutdown under load: SIGTERM to a worker with every slot busy and tasks prefetched.

Tasks that end within the grace period are reported; the one still running at its end is killed
and handed back; prefetched tasks go back unstarted. None is counted as failed: no retry spent,
no failed, crashed or lost attempt; the worker deregisters and exits 0, and every task then
completes on another worker. SIGTERM is sent to the worker alone, and to its process group (as
`kill -TERM -PGID` or a terminal's job control would), which reaches its executor's fork server.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.executor import Execution, ProcessPool
from conveyor.handlers import HandlerPolicy
from conveyor.ledger import SubmitLedger, check, fetch_tasks, read_executions, read_submits
from conveyor.testing import Cluster, pid_gone, wait_until
from tests.helpers.postgres import postgres_url
from tests.helpers.stores import db

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOBS = "tests.helpers.chaos_jobs"
GRACE_S = 2.0
__all__ = ["db", "postgres_url"]  # fixtures, used by name


@pytest.fixture
def cluster(tmp_path: Path, db: str | None) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db=db, lease_s=3.0, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def workload(markers: Path) -> list[TaskSpec]:
    """Leased in priority order: three to run (two finish within the grace period, one does
    not), three to wait prefetched behind them, forty more still queued."""

    def step(name: str, priority: int, sleep_s: float) -> TaskSpec:
        return TaskSpec(handler=f"{JOBS}:step", name=name, args=[name, None, sleep_s],
                        priority=priority)  # fmt: skip

    stubborn = TaskSpec(handler=f"{JOBS}:long_first_time", name="stubborn",
                        args=[str(markers), "stubborn", 60], priority=10)  # fmt: skip
    return [
        step("finisher-0", 10, 0.8),
        step("finisher-1", 10, 0.8),
        stubborn,
        *(step(f"prefetched-{i}", 5, 0.05) for i in range(3)),
        *(step(f"rest-{i}", 0, 0.05) for i in range(40)),
    ]


@pytest.mark.parametrize("group", [False, True], ids=["worker", "process-group"])
def test_sigterm_under_load_hands_back_or_finishes_every_task_and_fails_none(
    cluster: Cluster, tmp_path: Path, group: bool
) -> None:
    ledger, markers = tmp_path / "ledger", tmp_path / "markers"
    markers.mkdir()
    args = ("--ledger", str(ledger), "--prefetch", "3", "--grace-s", str(GRACE_S))
    with Client(cluster.url) as client, SubmitLedger(tmp_path / "submits.jsonl") as submits:
        tasks = client.submit_batch(workload(markers))
        submits.record_all(tasks)
        by_name = {t.name: t.id for t in tasks}
        cluster.start_worker("leaving", concurrency=3, allow_modules=("tests",), extra_args=args)
        wait_until(
            lambda: len([r for r in read_executions(ledger) if r.event == "start"]) == 3,
            30,
            "three tasks to start",
        )
        wait_until(
            lambda: len(client.list(state="running").tasks) == 6, 10, "three more prefetched"
        )

        cluster.signal_worker("leaving", signal.SIGTERM, group=group)
        signalled = time.monotonic()
        assert cluster.workers["leaving"].wait(GRACE_S + 15) == 0
        assert time.monotonic() - signalled >= GRACE_S * 0.9, "the grace period was honoured"

        def outcomes(name: str) -> list[str | None]:
            return [a.outcome and a.outcome.value for a in client.get(by_name[name]).attempt_log]

        assert outcomes("finisher-0") == outcomes("finisher-1") == ["succeeded"]
        assert outcomes("stubborn") == ["handed_back"]
        for i in range(3):
            assert outcomes(f"prefetched-{i}") == ["handed_back"]
        started = {r.task_id for r in read_executions(ledger) if r.event == "start"}
        assert started == {by_name["finisher-0"], by_name["finisher-1"], by_name["stubborn"]}
        assert all(client.get(by_name[f"rest-{i}"]).attempts == 0 for i in range(40))
        assert not cluster.worker_alive("leaving")
        assert "INFO conveyor.worker.worker: deregistered" in cluster.log("leaving")
        assert not (markers / "stubborn.done").exists(), "the stubborn task was killed"

        cluster.start_worker("staying", concurrency=3, allow_modules=("tests",),
                             extra_args=("--ledger", str(ledger)))  # fmt: skip
        for task in tasks:
            assert client.result(task.id, timeout_s=60).state is TaskState.SUCCEEDED
        final = fetch_tasks(cluster.url)
        assert {t.retries_used for t in final.values()} == {0}
        assert {a.outcome for t in final.values() for a in t.attempts} == {
            "succeeded",
            "handed_back",
        }
        report = check(read_submits(tmp_path / "submits.jsonl"), read_executions(ledger), final,
                       3.0)  # fmt: skip
        assert report.ok, report.summary()
        log = cluster.log("leaving")
        assert "SIGTERM received: draining" in log and "Traceback" not in log


def test_a_sigterm_to_the_executors_fork_server_does_not_crash_running_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process-group SIGTERM does to the executor, alone: the fork server must survive it,
    or the pool takes the end of its children's status pipes for their deaths."""
    monkeypatch.syspath_prepend(str(ROOT))
    pid_file = tmp_path / "child.pid"
    job = Execution("t1", 1, "tests.helpers.ledger_jobs:sleep_recording_pid",
                    [str(pid_file), 1.0], {}, 30)  # fmt: skip
    with ProcessPool(1, HandlerPolicy(allow_modules=("tests",))) as pool:
        pool.start(job)
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the task to start")
        stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
        fork_server = int(stat.rsplit(")", 1)[1].split()[1])
        os.kill(fork_server, signal.SIGTERM)
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results = pool.wait(1.0)
        assert [(r.task_id, r.outcome) for r in results] == [("t1", Outcome.SUCCEEDED)]
        assert not pid_gone(fork_server)
