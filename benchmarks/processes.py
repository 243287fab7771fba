"""Worker processes of the peer systems: started as their documentation says (their own CLI),
each in a session of its own so that stopping one takes its children too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class WorkerProcesses:
    def __init__(self, directory: Path, system: str) -> None:
        self._directory = directory
        self._system = system
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, commands: Sequence[Sequence[str]], env: Mapping[str, str] | None = None
    ) -> None:
        """Start one process per command (each a console script of the venv, or `-m mod`)."""
        self.stop()
        for i, command in enumerate(commands):
            log = (self._directory / f"{self._system}-{i}.log").open("ab")
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, *command],
                    cwd=REPO,
                    env={**os.environ, **(env or {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if any(proc.poll() is not None for proc in self._procs):
                raise RuntimeError(f"a {self._system} worker exited; see {self.logs}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._system} workers did not start; see {self.logs}")
            time.sleep(0.05)

    @property
    def logs(self) -> str:
        return str(self._directory / f"{self._system}-*.log")

    def stop(self) -> None:
        """SIGTERM (their warm shutdown), then SIGKILL what is left after 30 s."""
        for proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
