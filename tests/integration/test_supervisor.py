"""`conveyor worker --processes N`: the supervisor restarts what dies, leaves alone what finished,
drains everything on SIGTERM, kills what will not drain, and the copies it starts are the worker
the options describe.

Most tests supervise small Python scripts instead of workers, so that each behaviour is seen
alone; tests/e2e/test_supervisor_e2e.py runs the real thing against a server.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.handlers import HandlerPolicy
from conveyor.testing import pid_gone, wait_until
from conveyor.worker import WorkerConfig
from conveyor.worker.supervisor import Supervisor, worker_argv

SLEEPER = "import sys, time; open(sys.argv[1], 'a').write('start\\n'); time.sleep(60)"
DRAINER = (
    "import signal, sys, time, pathlib\n"
    "log = pathlib.Path(sys.argv[1])\n"
    "def drain(signum, frame):\n"
    "    log.open('a').write(f'drained {signum}\\n'); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, drain)\n"
    "log.open('a').write('start\\n')\n"
    "time.sleep(60)\n"
)
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'a').write('start\\n')\n"
    "time.sleep(60)\n"
)


class Running:
    """A Supervisor run on a thread; `.status` once it returned."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.status = self.supervisor.run()

    def join(self, timeout_s: float) -> int | None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the supervisor did not return"
        return self.status


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(script: str, count: int, **kwargs: Any) -> Running:
        def command(index: int) -> list[str]:
            return [sys.executable, "-c", script, str(tmp_path / f"copy-{index}.log")]

        running = Running(Supervisor(count, command, **kwargs))
        started.append(running)
        return running

    yield start
    for running in started:
        running.supervisor.stop()
        running.supervisor.stop()  # the second call kills
        running.thread.join(30)


def starts(tmp_path: Path, index: int) -> int:
    path = tmp_path / f"copy-{index}.log"
    return path.read_text().count("start") if path.exists() else 0


def test_runs_n_copies_numbered_1_to_n(tmp_path: Path, supervise: Any) -> None:
    running = supervise(SLEEPER, 3)
    wait_until(lambda: all(starts(tmp_path, i) == 1 for i in (1, 2, 3)), 15, "three copies")
    assert sorted(running.supervisor.pids()) == [1, 2, 3]


def test_a_copy_that_dies_is_restarted_under_the_same_number(
    tmp_path: Path, supervise: Any
) -> None:
    running = supervise(SLEEPER, 2)
    wait_until(lambda: starts(tmp_path, 1) == starts(tmp_path, 2) == 1, 15, "two copies")
    first = running.supervisor.pids()
    os.kill(first[1], signal.SIGKILL)
    wait_until(lambda: starts(tmp_path, 1) == 2, 15, "copy 1 to start again")
    wait_until(lambda: len(running.supervisor.pids()) == 2, 15, "two copies again")
    again = running.supervisor.pids()
    assert again[1] != first[1]
    assert again[2] == first[2]  # the other copy was left alone
    assert running.supervisor.restarts == 1


def test_a_copy_that_keeps_dying_at_once_is_restarted_ever_more_slowly(
    tmp_path: Path, supervise: Any
) -> None:
    crash = "import sys; open(sys.argv[1], 'a').write('start\\n'); sys.exit(3)"
    running = supervise(crash, 1, min_uptime_s=60, max_backoff_s=1.0)
    wait_until(lambda: starts(tmp_path, 1) >= 4, 20, "a few restarts")
    # Delays 0.5, 1, 1: four starts take at least 2.5 s, and nothing spins in between.
    begun = time.monotonic()
    count = starts(tmp_path, 1)
    wait_until(lambda: starts(tmp_path, 1) >= count + 2, 20, "two more restarts")
    assert time.monotonic() - begun >= 1.5
    assert running.status is None  # still supervising


def test_copies_that_finish_on_purpose_are_not_restarted_and_the_supervisor_ends(
    tmp_path: Path, supervise: Any
) -> None:
    done = "import sys; open(sys.argv[1], 'a').write('start\\n'); sys.exit(0)"
    running = supervise(done, 2)
    assert running.join(15) == 0
    assert starts(tmp_path, 1) == starts(tmp_path, 2) == 1


def test_stop_forwards_sigterm_to_every_copy_and_waits_for_their_drain(
    tmp_path: Path, supervise: Any
) -> None:
    running = supervise(DRAINER, 2)
    wait_until(lambda: all(starts(tmp_path, i) == 1 for i in (1, 2)), 15, "two copies")
    pids = running.supervisor.pids()
    running.supervisor.stop()
    assert running.join(15) == 0
    for index in (1, 2):
        assert f"drained {int(signal.SIGTERM)}" in (tmp_path / f"copy-{index}.log").read_text()
    assert all(pid_gone(pid) for pid in pids.values())


def test_copies_that_do_not_drain_in_time_are_killed(tmp_path: Path, supervise: Any) -> None:
    running = supervise(STUBBORN, 1, stop_timeout_s=0.5)
    wait_until(lambda: starts(tmp_path, 1) == 1, 15, "the copy to ignore SIGTERM")
    [pid] = running.supervisor.pids().values()
    begun = time.monotonic()
    running.supervisor.stop()
    assert running.join(15) == 0
    assert time.monotonic() - begun < 5
    assert pid_gone(pid)


def test_a_second_stop_kills_at_once(tmp_path: Path, supervise: Any) -> None:
    running = supervise(STUBBORN, 1, stop_timeout_s=60)
    wait_until(lambda: starts(tmp_path, 1) == 1, 15, "the copy to ignore SIGTERM")
    begun = time.monotonic()
    running.supervisor.stop()
    time.sleep(0.3)  # the drain has begun and would wait a minute
    running.supervisor.stop()
    assert running.join(15) == 0
    assert time.monotonic() - begun < 5


def record_worker(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    ctx = click.Context(cli, info_name="conveyor")
    worker = cli.get_command(ctx, "worker")
    assert worker is not None
    seen: dict[str, Any] = {}
    monkeypatch.setattr(worker, "callback", lambda **kwargs: seen.update(kwargs))
    return seen


def test_each_copy_is_the_worker_the_options_describe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """worker_argv, parsed again by `conveyor worker`, gives back the same settings."""
    for name in ("CONVEYOR_WORKER_PROCESSES", "CONVEYOR_WORKER_CONCURRENCY", "CONVEYOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config = WorkerConfig(
        server_url="http://10.0.0.5:8000",
        token="secret",
        name="box",
        concurrency=3,
        prefetch=2,
        prefetch_hold_s=2.5,
        labels={"zone": "eu", "disk": "ssd"},
        queues=("default", "images"),
        resources={"gpu": 1.0, "memory_mb": 2048.0},
        burst=True,
        grace_s=12.5,
        memory_limit_mb=512,
        ledger_dir=str(tmp_path),
        policy=HandlerPolicy(allow_shell=True, allow_modules=("myapp", "other"),
                             files_root=str(tmp_path),
                             allow_networks=("10.0.0.0/8", "db.internal")),
        pass_env=("AWS_PROFILE", "HTTPS_PROXY"),
        env={"MODE": "batch", "EQ": "a=b"},
    )  # fmt: skip
    argv = worker_argv(config, index=2, base_name="box")
    assert "secret" not in argv  # the token goes through a pipe
    seen = record_worker(monkeypatch)
    # A config file asking for processes must not make the copy supervise in turn.
    monkeypatch.setenv("CONVEYOR_WORKER_PROCESSES", "4")
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen == {
        "server": "http://10.0.0.5:8000",
        "token": None,
        "concurrency": 3,
        "prefetch": 2,
        "prefetch_hold_s": 2.5,
        "labels": ("zone=eu", "disk=ssd"),
        "queues": ("default", "images"),
        "resources": {"gpu": 1.0, "memory_mb": 2048.0},
        "name": "box-2",
        "burst": True,
        "processes": 0,
        "grace_s": 12.5,
        "memory_limit_mb": 512,
        "ledger_dir": str(tmp_path),
        "allow": ("shell",),
        "allow_modules": ("myapp", "other"),
        "allow_networks": ("10.0.0.0/8", "db.internal"),
        "files_root": str(tmp_path),
        "pass_env": ("AWS_PROFILE", "HTTPS_PROXY"),
        "set_env": ("MODE=batch", "EQ=a=b"),
        "token_fd": None,
        "log_format": "text",  # the supervisor adds its own --log-format after these
    }


def test_processes_must_not_be_negative() -> None:
    result = CliRunner().invoke(cli, ["worker", "--processes", "-1"])
    assert result.exit_code == 2
    assert "--processes" in result.output
