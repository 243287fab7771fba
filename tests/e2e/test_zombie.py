"""A zombie worker: paused with SIGSTOP past its lease while its tasks run elsewhere, then resumed.

Every write it makes for those tasks is refused: the report of the task it finished while paused
gets 409, its heartbeat is told to stop the task still running and kills that task's process,
and the results recorded are the other worker's. Proved from the API, the worker's log and the
execution ledgers; then the zombie, registered again, serves new work.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.ledger import ExecutionRecord, check, fetch_tasks, read_executions, read_submits
from conveyor.ledger.records import SubmitLedger
from conveyor.testing import Cluster, pid_gone, wait_until
from tests.helpers.postgres import postgres_url
from tests.helpers.stores import db

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LONG_FIRST_TIME = "tests.helpers.chaos_jobs:long_first_time"
LEASE_S = 3.0
__all__ = ["db", "postgres_url"]  # fixtures, used by name


@pytest.fixture
def cluster(tmp_path: Path, db: str | None) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db=db, lease_s=LEASE_S, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def ended(ledger: Path, task_id: str, worker: str) -> ExecutionRecord | None:
    return next(
        (
            r
            for r in read_executions(ledger)
            if r.event == "end" and r.task_id == task_id and r.worker_name == worker
        ),
        None,
    )


def test_a_resumed_zombie_has_every_write_refused_and_stops_its_stale_task(
    cluster: Cluster, tmp_path: Path
) -> None:
    ledger, markers = tmp_path / "ledger", tmp_path / "markers"
    markers.mkdir()
    worker_args = ("--ledger", str(ledger))
    cluster.start_worker("zombie", concurrency=2, allow_modules=("tests",), extra_args=worker_args)
    with Client(cluster.url) as client, SubmitLedger(tmp_path / "submits.jsonl") as submits:
        # `running` still runs when the zombie wakes; `finished` ends while it sleeps.
        running = client.submit(LONG_FIRST_TIME, str(markers), "running", 60, key="running")
        finished = client.submit(LONG_FIRST_TIME, str(markers), "finished", 0.5, key="finished")
        submits.record_all([running, finished])
        wait_until(
            lambda: (
                {r.task_id for r in read_executions(ledger) if r.event == "start"}
                == {running.id, finished.id}
            ),
            30,
            "both tasks to start on the zombie",
        )
        zombie_id = read_executions(ledger)[0].worker_id
        # The ledger has the start before the handler runs; its pid comes a moment later.
        pid_file = markers / "running.pid"
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the task's pid")
        stale_child = int(pid_file.read_text())

        cluster.signal_worker("zombie", signal.SIGSTOP)  # the worker and its fork server
        cluster.start_worker("healthy", concurrency=2, allow_modules=("tests",),
                             extra_args=worker_args)  # fmt: skip
        for task in (running, finished):
            outcome = client.result(task.id, timeout_s=60)
            assert outcome.state is TaskState.SUCCEEDED, outcome
        wait_until((markers / "finished.done").exists, 10, "the paused worker's task to end")
        assert not pid_gone(stale_child), "the stale task is still running when the zombie wakes"

        cluster.signal_worker("zombie", signal.SIGCONT)
        wait_until(lambda: pid_gone(stale_child), 30, "the stale task's process to be killed")
        wait_until(
            lambda: "reports refused" in cluster.log("zombie"),
            30,
            "the zombie's report to be refused",
        )
        wait_until(
            lambda: ended(ledger, running.id, "zombie") and ended(ledger, finished.id, "zombie"),
            30,
            "the zombie to record how both executions ended",
        )

        # The ledger: the finished task's result was sent and refused; the running one was
        # killed on the server's word, without a report.
        stopped = ended(ledger, running.id, "zombie")
        refused = ended(ledger, finished.id, "zombie")
        assert stopped and (stopped.outcome, stopped.reported) == ("cancelled", False)
        assert refused and (refused.outcome, refused.reported) == ("succeeded", True)
        log = cluster.log("zombie")
        assert f"stale token 1: task {finished.id}" in log
        assert re.search(r"the server stopped tasks; killing them worker_id=\S+ count=1 ", log)

        # The database: the zombie's attempts ended lost, the results are the healthy worker's.
        healthy_id = next(
            r.worker_id for r in read_executions(ledger) if r.worker_name == "healthy"
        )
        for task in (running, finished):
            detail = client.get(task.id)
            first, second = detail.attempt_log
            assert (first.worker_id, first.outcome and first.outcome.value) == (zombie_id, "lost")
            assert (second.worker_id, second.outcome and second.outcome.value) == (
                healthy_id,
                "succeeded",
            )
            assert detail.retries_used == 0
            assert isinstance(detail.result, dict) and detail.result["first"] is False
            assert detail.result["pid"] != stale_child

        # The checker agrees: nothing recorded twice, no execution inside another's lease, and
        # the zombie's executions overlapped the healthy worker's only after their leases expired.
        report = check(read_submits(tmp_path / "submits.jsonl"), read_executions(ledger),
                       fetch_tasks(cluster.url), LEASE_S)  # fmt: skip
        assert report.ok, report.summary()
        assert report.figures["overlapping_executions"] >= 2

        # The zombie (registered again if it had been declared dead) serves new work once it is
        # the only worker.
        assert cluster.stop_worker("healthy") == 0
        wait_until(lambda: cluster.worker_alive("zombie"), 30, "the zombie to be alive")
        after = client.submit("echo", "after")
        assert client.result(after.id, timeout_s=30).state is TaskState.SUCCEEDED
        (attempt,) = client.get(after.id).attempt_log
        alive = [w.id for w in client.workers() if w.name == "zombie" and w.state == "alive"]
        assert alive == [attempt.worker_id]
        assert cluster.workers["zombie"].poll() is None
