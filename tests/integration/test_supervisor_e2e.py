"""`conveyor worker --processes 2` against a real server: two workers named NAME-1 and NAME-2
run tasks and show in `conveyor workers`; one killed with SIGKILL comes back under its name;
SIGTERM drains both and the supervisor exits 0; a supervisor killed with SIGKILL takes its
workers with it (they drain) instead of leaving them unsupervised."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.testing import Cluster, pid_gone, wait_until

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


def alive(cluster: Cluster) -> dict[int, str]:
    """pid -> name of the workers registered alive (a killed one stays so until declared dead)."""
    workers = httpx.get(f"{cluster.url}/api/v1/workers", timeout=5).json()["workers"]
    return {w["pid"]: w["name"] for w in workers if w["state"] == "alive"}


def pid_of(cluster: Cluster, name: str) -> int | None:
    return next((pid for pid, n in alive(cluster).items() if n == name and not pid_gone(pid)), None)


def test_two_supervised_workers_run_tasks_restart_and_drain(cluster: Cluster) -> None:
    cluster.start_worker("box", extra_args=["--processes", "2"], wait=False)
    wait_until(lambda: {"box-1", "box-2"} <= set(alive(cluster).values()), 30, "box-1, box-2")

    with Client(cluster.url) as client:
        tasks = [client.submit("sha256", f"text {i}") for i in range(6)]
        outcomes = [client.result(t.id, timeout_s=30) for t in tasks]
    assert all(o.state.value == "succeeded" for o in outcomes)

    listed = subprocess.run(
        [sys.executable, "-m", "conveyor", "workers", "--server", cluster.url, "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert {"box-1", "box-2"} <= {w["name"] for w in json.loads(listed)}

    killed, other = pid_of(cluster, "box-1"), pid_of(cluster, "box-2")
    assert killed is not None and other is not None
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: pid_of(cluster, "box-1") not in (None, killed), 30, "box-1 to restart")
    assert pid_of(cluster, "box-2") == other

    pids = [pid_of(cluster, "box-1"), other]
    supervisor = cluster.workers["box"]
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert all(pid is not None and pid_gone(pid) for pid in pids)
    assert not set(pids) & set(alive(cluster))  # drained and deregistered
    assert "Traceback" not in cluster.log("box")


def test_workers_of_a_killed_supervisor_drain_and_exit(cluster: Cluster) -> None:
    cluster.start_worker("crate", extra_args=["--processes", "1"], wait=False)
    wait_until(lambda: pid_of(cluster, "crate-1") is not None, 30, "crate-1")
    pid = pid_of(cluster, "crate-1")
    assert pid is not None
    supervisor = cluster.workers["crate"]
    supervisor.send_signal(signal.SIGKILL)  # the supervisor alone, not its workers' sessions
    supervisor.wait(10)
    wait_until(lambda: pid_gone(pid), 30, "the orphaned worker to drain and exit")
    assert pid not in alive(cluster)  # it deregistered as it drained
