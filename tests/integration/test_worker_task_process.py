"""A task's processes and output, through a real server and a real `conveyor worker` process.

What a shell task starts in a session of its own (`setsid sleep 300 &`) dies with the task:
when it ends, when it times out, and when its worker is killed. What a task writes to its file
descriptors lands in the attempt's captured tails, never in the worker's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.testing import pid_gone
from tests.integration.test_worker import (
    DONE_S,
    REPO_ROOT,
    TASKS,
    LiveServer,
    client,
    importable_tests,
    server,
    wait_for,
)

pytestmark = pytest.mark.slow
__all__ = ["client", "importable_tests", "server"]  # fixtures, used by name

DETACH = "setsid sleep 300 >/dev/null 2>&1 </dev/null &"


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids the test expects dead: killed at the end in any case, so a failure leaves none."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def worker(server: LiveServer, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--server", server.url, "-c", "2",
             "--allow", "shell", "--allow-module", "tests", "--grace-s", "1"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    yield proc, log
    if proc.poll() is None:
        proc.kill()
    proc.wait(DONE_S)


def test_a_detached_process_dies_when_its_shell_task_ends(
    client: Client, worker: tuple[subprocess.Popen[bytes], Path], strays: list[int]
) -> None:
    task = client.submit("shell", f"{DETACH} echo $!", kwargs={"shell": True})
    outcome = client.result(task.id, timeout_s=DONE_S)
    assert outcome.state is TaskState.SUCCEEDED, worker[1].read_text()
    assert isinstance(outcome.result, dict)
    grandchild = int(str(outcome.result["stdout"]))
    strays.append(grandchild)
    wait_for(lambda: pid_gone(grandchild))


def test_a_detached_process_dies_when_its_task_times_out(
    client: Client,
    worker: tuple[subprocess.Popen[bytes], Path],
    strays: list[int],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    command = f"{DETACH} echo $! > {pid_file}; sleep 60"
    task = client.submit("shell", command, kwargs={"shell": True}, timeout_s=1)
    outcome = client.result(task.id, timeout_s=DONE_S)
    assert outcome.state is TaskState.TIMED_OUT, worker[1].read_text()
    grandchild = int(pid_file.read_text())
    strays.append(grandchild)
    wait_for(lambda: pid_gone(grandchild))


def test_a_detached_process_dies_with_a_killed_worker(
    client: Client,
    worker: tuple[subprocess.Popen[bytes], Path],
    strays: list[int],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    client.submit("shell", f"{DETACH} echo $! > {pid_file}; sleep 60", kwargs={"shell": True})
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    grandchild = int(pid_file.read_text())
    strays.append(grandchild)
    assert not pid_gone(grandchild)
    proc, _ = worker
    proc.kill()  # the worker alone: its children notice and take their trees down
    wait_for(lambda: pid_gone(grandchild))


def test_raw_and_subprocess_output_lands_in_the_attempt_not_in_the_worker_log(
    client: Client, worker: tuple[subprocess.Popen[bytes], Path]
) -> None:
    task = client.submit(f"{TASKS}:write_everywhere", "marker-7f3a")
    assert client.result(task.id, timeout_s=DONE_S).state is TaskState.SUCCEEDED
    [attempt] = client.get(task.id).attempt_log
    for line in ("print-marker-7f3a", "fd1-marker-7f3a", "sub-out-marker-7f3a"):
        assert line in attempt.stdout_tail
    for line in ("print-err-marker-7f3a", "fd2-marker-7f3a", "sub-err-marker-7f3a"):
        assert line in attempt.stderr_tail
    flood = client.submit(f"{TASKS}:flood", 100_000, "<end-7f3a>")
    assert client.result(flood.id, timeout_s=DONE_S).state is TaskState.SUCCEEDED
    [attempt] = client.get(flood.id).attempt_log
    assert attempt.stdout_tail == ("x" * 100_000 + "<end-7f3a>")[-4096:]
    _, log = worker
    assert "marker-7f3a" not in log.read_text(errors="replace")
    assert "xxxxxxxx" not in log.read_text(errors="replace")
