"""A worker that loses its identity on the server runs each of its tasks once, and only once.

When the server forgets a worker (an admin deregisters it, or it is declared dead after a network
gap), the server re-queues its tasks, and the worker, registered again, may lease the same task
once more under a new fencing token. The old execution must die, the new one must be the only
copy, and the worker's slots must stay true: it keeps leasing into the slot that is free.

A real server (uvicorn in a thread) and a real `conveyor worker` process; each execution
announces its pid, so the test counts the copies of a task alive at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.engine import EngineSettings
from conveyor.testing import pid_gone
from tests.integration.test_worker import (
    DONE_S,
    REPO_ROOT,
    TASKS,
    LiveServer,
    free_port,
    importable_tests,
    wait_for,
)

pytestmark = pytest.mark.slow

__all__ = ["importable_tests"]  # a fixture, used by name
SETTLE_S = 30.0
"""Time for a worker to sort out its leases after the stimulus: several heartbeats' worth."""


class PidCollector:
    """Collects the pids `announce_then_sleep` handlers send, from a background thread, and
    samples how many of them are alive at once."""

    def __init__(self) -> None:
        self.most_alive = 0
        # A path, not an abstract name: a task's arguments may not hold a NUL character.
        self.address = f"/tmp/conveyor-test-{uuid.uuid4().hex[:12]}.sock"
        self.pids: list[int] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.address)
        self._sock.listen()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(64)
            if data:
                self.pids.append(int(data))

    def _sample(self) -> None:
        while not self._closed.wait(0.005):
            self.most_alive = max(self.most_alive, len(self.alive()))

    def alive(self) -> list[int]:
        return [pid for pid in list(self.pids) if not pid_gone(pid)]

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)


@pytest.fixture
def pids() -> Iterator[PidCollector]:
    collector = PidCollector()
    yield collector
    collector.close()


class GapProxy:
    """A TCP relay to the server that can be cut: while cut, every connection is dropped, so the
    worker's calls fail as they would across a broken network."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def spawn_worker(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--server", url, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DONE_S)


def alive_worker_id(client: Client, name: str) -> str | None:
    alive = [w.id for w in client.workers() if w.name == name and w.state == "alive"]
    return alive[0] if len(alive) == 1 else None


def settled_on_one_copy(client: Client, pids: PidCollector, task_id: str, name: str) -> bool:
    """One execution of the task alive, held by the worker's registration the server knows."""
    if len(pids.alive()) != 1:
        return False
    worker_id = alive_worker_id(client, name)
    if worker_id is None:
        return False
    return client.worker(worker_id).running == [task_id]


def assert_one_copy_and_a_free_slot(
    client: Client, pids: PidCollector, task_id: str, name: str, log: Path
) -> None:
    try:
        wait_for(lambda: settled_on_one_copy(client, pids, task_id, name), SETTLE_S)
    except AssertionError:
        raise AssertionError(
            f"copies alive: {pids.alive()} of {pids.pids}; workers: {client.workers()}\n"
            + log.read_text(errors="replace")[-4000:]
        ) from None
    assert client.get(task_id).state is TaskState.RUNNING
    # The other slot is free, and the worker knows it: it leases and runs more work.
    echo = client.submit("echo", "still leasing")
    outcome = client.result(echo.id, timeout_s=DONE_S)
    assert outcome.result == "still leasing", log.read_text(errors="replace")[-4000:]
    # And so it stays, two heartbeats later: the new work displaced or duplicated nothing.
    worker_id = alive_worker_id(client, name) or ""
    for _ in range(2):
        seen = client.worker(worker_id).last_seen_at
        wait_for(lambda seen=seen: client.worker(worker_id).last_seen_at > seen, SETTLE_S)
    assert len(pids.alive()) == 1, log.read_text(errors="replace")[-4000:]
    assert client.worker(worker_id).running == [task_id]
    assert client.get(task_id).state is TaskState.RUNNING
    # Never two copies at once: the stale execution was gone before the new one started.
    assert pids.most_alive == 1, (pids.pids, log.read_text(errors="replace")[-4000:])


@pytest.fixture
def default_server(tmp_path: Path, importable_tests: None) -> Iterator[LiveServer]:
    """The default timings: heartbeats every 5 s, so that several deregistrations land between
    two heartbeats and the worker learns of them from its lease calls."""
    live = LiveServer(tmp_path / "defaults.db", free_port(), EngineSettings())
    live.start()
    yield live
    live.stop()


def test_a_worker_deregistered_again_and_again_runs_its_task_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    default_server: LiveServer,
    pids: PidCollector,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    log = tmp_path / "worker.log"
    client = Client(default_server.url, timeout_s=DONE_S)
    request.addfinalizer(client.close)
    workers.append(
        spawn_worker(default_server.url, log, "-c", "2", "--name", "w", "--allow-module", "tests")
    )
    task = client.submit(f"{TASKS}:announce_then_sleep", pids.address, 60)
    wait_for(lambda: len(pids.pids) == 1)

    for _ in range(3):
        wait_for(lambda: alive_worker_id(client, "w") is not None)
        client.deregister_worker(alive_worker_id(client, "w") or "")
        time.sleep(1.5)  # the stimulus itself: three deregistrations, 1.5 s apart

    assert_one_copy_and_a_free_slot(client, pids, task.id, "w", log)
    assert workers[0].poll() is None


@pytest.fixture
def short_lived_server(tmp_path: Path, importable_tests: None) -> Iterator[LiveServer]:
    """Declares a worker dead after 5.5 s of silence; leases run out 6 s after a heartbeat.
    Heartbeats every 5 s: the worker's lease calls, retried sooner, find out first that the
    server forgot it."""
    settings = EngineSettings(lease_s=6.0, heartbeat_interval_s=5.0, worker_dead_after_s=5.5)
    live = LiveServer(tmp_path / "dead-after.db", free_port(), settings)
    live.start()
    yield live
    live.stop()


def test_a_worker_declared_dead_across_a_network_gap_runs_its_task_once(
    tmp_path: Path,
    short_lived_server: LiveServer,
    pids: PidCollector,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    proxy = GapProxy(short_lived_server.port)
    log = tmp_path / "worker.log"
    try:
        with Client(short_lived_server.url, timeout_s=DONE_S) as client:
            workers.append(
                spawn_worker(proxy.url, log, "-c", "2", "--name", "w", "--allow-module", "tests")
            )
            task = client.submit(f"{TASKS}:announce_then_sleep", pids.address, 60)
            wait_for(lambda: len(pids.pids) == 1)
            [first] = [w.id for w in client.workers()]

            proxy.cut()
            # Declared dead, and the task back in the queue once its lease ran out.
            wait_for(lambda: client.worker(first).state == "dead")
            wait_for(lambda: client.get(task.id).state is TaskState.QUEUED)
            proxy.restore()

            assert_one_copy_and_a_free_slot(client, pids, task.id, "w", log)
            assert workers[0].poll() is None
    finally:
        proxy.close()
