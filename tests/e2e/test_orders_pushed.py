"""A worker hears of a cancel or a drain the moment it is given, not at its next heartbeat.

The heartbeat here is 20 s apart (a 120 s lease): before orders were pushed, a cancel took
effect up to 20 s later, at the worker's next heartbeat. Now the server holds each heartbeat
that has nothing to say and answers it as soon as there is something, also when the order was
given through another server on the same PostgreSQL database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.testing import Cluster, pid_gone, wait_until
from tests.helpers.postgres import postgres_url

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
__all__ = ["postgres_url"]  # the fixture, used by name
HEARTBEAT_S = 20.0
PUSHED_S = 5.0
"""An order must reach the worker well within one heartbeat interval."""


def _cluster(tmp_path: Path, db: str | None = None) -> Cluster:
    return Cluster(
        tmp_path, db=db, lease_s=120.0, server_args=["--heartbeat-s", str(HEARTBEAT_S)], cwd=ROOT
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = _cluster(tmp_path)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def _start_long_task(cluster: Cluster, client: Client, pid_file: Path) -> str:
    task = client.submit("tests.helpers.ledger_jobs:sleep_recording_pid", str(pid_file), 300)
    cluster.start_worker("w", allow_modules=("tests",))
    wait_until(pid_file.exists, 30, "the long task to start")
    return task.id


@pytest.mark.postgres
def test_a_cancel_given_through_another_server_kills_the_task_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    cluster = _cluster(tmp_path, postgres_url)
    try:
        cluster.start_server()  # the worker's: it holds the worker's heartbeat
        other = cluster.start_server()
        with Client(cluster.url) as client, Client(other) as elsewhere:
            _assert_a_cancel_kills_at_once(cluster, client, elsewhere, tmp_path)
    finally:
        cluster.stop()


def test_a_cancel_kills_the_running_task_at_once(cluster: Cluster, tmp_path: Path) -> None:
    with Client(cluster.url) as client:
        _assert_a_cancel_kills_at_once(cluster, client, client, tmp_path)


def _assert_a_cancel_kills_at_once(
    cluster: Cluster, submitting: Client, cancelling: Client, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    task_id = _start_long_task(cluster, submitting, pid_file)
    child = int(pid_file.read_text())
    cancelled_at = time.monotonic()
    assert cancelling.cancel(task_id).state is TaskState.CANCELLED
    wait_until(lambda: pid_gone(child), HEARTBEAT_S * 2, "the cancelled task to be killed")
    assert time.monotonic() - cancelled_at < PUSHED_S


def test_a_stop_reaches_the_worker_at_once(cluster: Cluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    with Client(cluster.url) as client:
        task_id = _start_long_task(cluster, client, pid_file)
        told_at = time.monotonic()
        (worker,) = client.stop_workers(queue="default")
        assert worker.name == "w"
        assert cluster.workers["w"].wait(HEARTBEAT_S * 2) == 0
        assert time.monotonic() - told_at < PUSHED_S
        task = client.get(task_id)
        assert task.state is TaskState.QUEUED and task.retries_used == 0  # handed back
