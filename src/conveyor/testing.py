"""Helpers for testing code that uses Conveyor: a real server and workers as local processes.

```python
from conveyor.testing import Cluster

cluster = Cluster(tmp_path)
cluster.start_server()
cluster.start_worker("w1", concurrency=2, allow_modules=("myapp",))
...                      # drive it with conveyor.client.Client(cluster.url)
cluster.stop()
```

Each process runs in its own process group, so `kill` takes a worker's task processes too, the way
a crash of its machine would. Conveyor's own end-to-end tests and benchmarks use these.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

__all__ = [
    "Cluster",
    "ServerExitedError",
    "free_port",
    "interrupt_on_sigterm",
    "pid_gone",
    "wait_until",
]


def interrupt_on_sigterm() -> None:
    """From now on a SIGTERM (`timeout`, a cancelled CI job) unwinds this process like Ctrl-C
    (KeyboardInterrupt), so that its clusters stop their servers and workers: by default it
    ends the process at once, and the processes a Cluster started, each in a session of its
    own, run on. Call it from the main thread."""
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll `condition` until it is truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def pid_gone(pid: int) -> bool:
    """True once the process is gone or a zombie awaiting its parent."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):  # reaped, before or while reading
        return True


class ServerExitedError(AssertionError):
    """A server process ended while starting (its database unreachable, say)."""


class Cluster:
    """Servers and workers, each in its own process group, on one database.

    `db` is a SQLite path (default: a file in `directory`) or a PostgreSQL URL; with PostgreSQL,
    call `start_server()` again to add servers that share the database. `env` is added to every
    process's environment (e.g. CONVEYOR_TOKENS for servers, CONVEYOR_TOKEN for workers: give
    workers theirs with `start_worker(env=...)`); `token` is what the cluster's own reads send.
    """

    def __init__(
        self,
        directory: Path,
        *,
        db: str | None = None,
        lease_s: float = 3.0,
        cwd: Path | None = None,
        server_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.directory = directory
        self.cwd = cwd or Path.cwd()  # where workers import allowed handler modules from
        self.db = db or str(directory / "conveyor.db")
        self.lease_s = lease_s
        self.server_args = list(server_args)
        self.env = dict(env or {})
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.servers: list[tuple[str, int, subprocess.Popen[bytes]]] = []  # (url, port, process)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        # Its processes lead sessions of their own and outlive a caller that never reaches
        # stop() (an exception, a broken pipe): they are killed when the cluster is collected
        # or the interpreter exits, whichever comes first.
        self._spawned: list[subprocess.Popen[bytes]] = []
        weakref.finalize(self, _kill_groups, self._spawned)

    @property
    def url(self) -> str:
        """The first server's URL."""
        return self.servers[0][0]

    @property
    def server(self) -> subprocess.Popen[bytes] | None:
        return self.servers[0][2] if self.servers else None

    def _spawn(
        self, log_name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        extra = {**self.env, **(env or {})}
        with (self.directory / f"{log_name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *args],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **extra} if extra else None,
            )
        self._spawned.append(process)
        return process

    def start_server(self, index: int | None = None, *, port: int | None = None) -> str:
        """Start a new server (on `port`, or a free one), or restart server `index` on its old
        port; returns its URL. Raises ServerExitedError if it exits before it answers."""
        if index is not None:
            port = self.servers[index][1]
        elif port is None:
            port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = self._spawn(
            f"server{len(self.servers) if index is None else index}",
            "server", "--db", self.db, "--port", str(port), "--lease-s", str(self.lease_s),
            *self.server_args,
        )  # fmt: skip
        if index is None:
            self.servers.append((url, port, process))
        else:
            self.servers[index] = (url, port, process)
        try:
            wait_until(
                lambda: self._healthy(url) or process.poll() is not None,
                30,
                f"the server at {url} to answer /health",
            )
        except AssertionError:
            self.kill(process)  # not left running behind a failed test
            raise
        if process.poll() is not None:
            log_name = f"server{len(self.servers) - 1 if index is None else index}"
            raise ServerExitedError(
                f"the server at {url} exited with status {process.returncode} before it "
                f"answered /health; the end of its log:\n{self.log(log_name)[-2000:]}"
            )
        return url

    def _healthy(self, url: str) -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(
        self,
        name: str,
        *,
        concurrency: int = 1,
        queues: str = "default",
        allow_modules: tuple[str, ...] = (),
        server: str | None = None,
        extra_args: Sequence[str] = (),
        wait: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start a worker connected to `server` (default: the first server's URL); with `wait`,
        return once it has registered."""
        allow = [arg for module in allow_modules for arg in ("--allow-module", module)]
        self.workers[name] = self._spawn(
            name, "worker", "--server", server or self.url, "--name", name,
            "--concurrency", str(concurrency), "--queues", queues, *allow, *extra_args,
            env=env,
        )  # fmt: skip
        if wait:
            wait_until(lambda: self.worker_alive(name), 30, f"worker {name} to register")

    def worker_alive(self, name: str) -> bool:
        try:
            workers = httpx.get(
                f"{self.url}/api/v1/workers", headers=self.headers, timeout=2
            ).json()["workers"]
        except httpx.HTTPError:
            return False
        return any(w["name"] == name and w["state"] == "alive" for w in workers)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process and every child it started, as a crash would."""
        _kill_groups([process])

    def signal_worker(self, name: str, signum: signal.Signals, *, group: bool = True) -> None:
        """Send `signum` to worker `name`: to its process group (the worker and its executor's
        fork server; task processes lead groups of their own), or to the worker alone."""
        pid = self.workers[name].pid
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)

    def stop_worker(self, name: str, timeout_s: float = 30) -> int:
        """SIGTERM worker `name` (it drains) and wait for it to exit; returns its exit status."""
        process = self.workers[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout_s)

    def kill_server(self, index: int = 0) -> None:
        if self.servers:
            self.kill(self.servers[index][2])

    def stop(self) -> None:
        for process in [*self.workers.values(), *(p for _, _, p in self.servers)]:
            if process.poll() is None:
                self.kill(process)

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _kill_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each process's group (what is left of it: a leader that exited may have left
    children behind), then reap the leader."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
