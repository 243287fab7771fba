"""`conveyor server`: refusing unsafe binds, settings from flags, a real process serving and
stopping, and local workers stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.cli.server import engine_settings, is_loopback, worker_args
from conveyor.server.local_workers import LocalWorkers
from conveyor.testing import pid_gone
from tests.integration.test_worker import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_host_is_refused_without_insecure(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["server", "--db", str(tmp_path / "x.db"), "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2
    assert "refusing to listen on '0.0.0.0'" in result.output
    assert "--insecure" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before touching anything


def test_engine_settings_follow_the_flags() -> None:
    default = engine_settings(None, None)
    assert (default.lease_s, default.heartbeat_interval_s, default.worker_dead_after_s) == (
        30.0,
        5.0,
        20.0,
    )
    short = engine_settings(3.0, None)
    assert (short.lease_s, short.heartbeat_interval_s, short.worker_dead_after_s) == (3.0, 1.0, 4.0)
    with pytest.raises(click.BadParameter, match="heartbeat_interval_s"):
        engine_settings(10.0, 20.0)


def test_worker_args_pass_the_handler_policy_through() -> None:
    assert worker_args(("shell",), ("myjobs", "tests"), "/srv/files", ("10.0.0.0/8",)) == [
        "--allow", "shell", "--allow-module", "myjobs", "--allow-module", "tests",
        "--allow-network", "10.0.0.0/8", "--files-root", "/srv/files",
    ]  # fmt: skip
    workers = LocalWorkers(1, ["--allow", "shell"], cli_args=["-v"])
    assert workers.command("http://127.0.0.1:1") == [
        sys.executable, "-m", "conveyor", "-v", "worker", "--server", "http://127.0.0.1:1",
        "--allow", "shell",
    ]  # fmt: skip


def read_url(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> str:
    """The server's URL, from the line it prints on stderr once it listens."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        match = re.search(r"Conveyor server at (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"the server did not start: {seen}")


@contextmanager
def server_process(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`conveyor server` on a free port with a database in `tmp_path`, and its URL; killed at
    the end if the test left it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "server", "--db", str(tmp_path / "s.db"),
         "--port", "0", *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    try:
        yield proc, read_url(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.slow
def test_a_real_server_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with server_process(tmp_path) as (proc, url):
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/health").json()["status"] == "ok"
            submitted = http.post("/api/v1/tasks", json={"handler": "sha256", "args": ["a"]})
            assert submitted.status_code == 201
            assert http.get("/docs").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)


class FakeWorkers(LocalWorkers):
    """Local workers that run a script instead of `conveyor worker`."""

    def __init__(self, script: str, count: int, grace_s: float) -> None:
        super().__init__(count, grace_s=grace_s)
        self.script = script

    def command(self, url: str) -> list[str]:
        return [sys.executable, "-c", self.script, url]


def test_local_workers_stop_on_sigterm_within_the_grace_period() -> None:
    workers = FakeWorkers("import time; time.sleep(60)", count=2, grace_s=10)
    workers.start("http://127.0.0.1:1")
    assert len(workers.alive) == 2
    started = time.monotonic()
    workers.stop()
    assert workers.alive == []
    assert time.monotonic() - started < 5  # SIGTERM was enough: no waiting out the grace


def test_local_workers_that_ignore_sigterm_are_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    script = (
        "import signal, sys, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    workers = FakeWorkers(script, count=1, grace_s=0.5)
    workers.start("http://127.0.0.1:1")
    deadline = time.monotonic() + 10
    while not ready.exists():  # the child installed its handler
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [proc] = workers.alive
    workers.stop()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("conveyor.cli.worker") is None,
    reason="`conveyor worker` is not available",
)
def test_all_in_one_runs_a_task_on_a_local_worker_and_stops_it(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "data.txt").write_text("abc")
    with server_process(tmp_path, "--workers", "1", "--files-root", str(files)) as (proc, url):
        with httpx.Client(base_url=url, timeout=40) as http:
            task = http.post("/api/v1/tasks", json={"handler": "sha256", "args": ["abc"]}).json()
            result = http.get(f"/api/v1/tasks/{task['id']}/result", params={"wait": 30}).json()
            assert result["done"] is True, result
            assert result["result"].startswith("ba7816bf")  # sha256("abc")
            # --files-root reaches the local workers: a file handler runs, inside that root.
            spec = {"handler": "sha256", "kwargs": {"path": "data.txt"}}
            task = http.post("/api/v1/tasks", params={"wait": 30}, json=spec).json()
            assert task["state"] == "succeeded", task
            assert task["result"] == result["result"]
            [worker] = http.get("/api/v1/workers").json()["workers"]
            worker_pid = worker["pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        with pytest.raises(ProcessLookupError):  # the local worker stopped with the server
            os.kill(worker_pid, 0)


@pytest.mark.slow
def test_local_workers_stop_when_their_server_is_killed(tmp_path: Path) -> None:
    """A server killed with SIGKILL cannot stop its workers: they must notice on their own, not
    live on as orphans leasing from whatever next listens on that port."""
    with server_process(tmp_path, "--workers", "1") as (proc, url):
        with httpx.Client(base_url=url, timeout=40) as http:
            wait_for(lambda: bool(http.get("/api/v1/workers").json()["workers"]), 60)
            [worker] = http.get("/api/v1/workers").json()["workers"]
        proc.kill()
        proc.wait(timeout=10)
        wait_for(lambda: pid_gone(worker["pid"]), 30)  # the local worker outlived its server
