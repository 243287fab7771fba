"""The worker program against a real server: uvicorn on a free port, over a SQLite file.

Workers run in a thread of this process (Worker.run) or, to receive SIGTERM, as a
`python -m conveyor worker` subprocess. Tests wait on events: a handler announcing itself over
a Unix socket, a result long-poll, a log record, a thread or process ending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

from conveyor.client import AsyncClient, Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Engine, EngineSettings
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError
from conveyor.handlers import HandlerPolicy
from conveyor.server import ServerSettings, create_app, request_shutdown
from conveyor.store.sqlite import SQLiteStore
from conveyor.testing import pid_gone
from conveyor.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.helpers.tasks"
HEARTBEAT_S = 0.3
ENGINE_SETTINGS = EngineSettings(
    lease_s=10.0, heartbeat_interval_s=HEARTBEAT_S, worker_dead_after_s=8.0
)
DONE_S = 15.0
"""Generous bound for anything that should take well under a second."""


class LiveServer:
    """The real app under uvicorn in a thread. stop() and start() again keep the port and db."""

    def __init__(self, db: Path, port: int, settings: EngineSettings = ENGINE_SETTINGS) -> None:
        self.db = db
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._store: SQLiteStore | None = None

    def start(self) -> None:
        self._store = SQLiteStore(self.db)
        self.engine = Engine(self._store, settings=self.settings)
        self.app = create_app(self.engine, ServerSettings(port=self.port, timer_interval_s=0.1))
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        self._thread.start()
        give_up_at = time.monotonic() + DONE_S
        while not server.started:  # uvicorn offers no event to wait on
            if not self._thread.is_alive() or time.monotonic() > give_up_at:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is None or self._thread is None or self._store is None:
            return
        request_shutdown(self.app)
        self._server.should_exit = True
        self._thread.join(timeout=DONE_S)
        self._store.close()
        self._server = self._thread = self._store = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # Children get this process' sys.path; they import tests.helpers.tasks from the repo root.
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.fixture
def server(tmp_path: Path, importable_tests: None) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "worker-test.db", free_port())
    live.start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, timeout_s=DONE_S) as c:
        yield c


class RunningWorker:
    def __init__(self, config: WorkerConfig) -> None:
        self.worker = Worker(config)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def stop(self) -> int | None:
        self.worker.stop("the test is over")
        return self.join()

    def join(self, timeout_s: float = DONE_S) -> int | None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the worker did not exit"
        return self.exit_code


@pytest.fixture
def start_worker(server: LiveServer) -> Iterator[Callable[..., RunningWorker]]:
    started: list[RunningWorker] = []

    def start(**options: object) -> RunningWorker:
        fields: dict[str, object] = {
            "server_url": server.url,
            "concurrency": 2,
            "policy": HandlerPolicy(allow_modules=("tests",)),
            "lease_wait_s": 2.0,
            "http_timeout_s": 5.0,
            "shutdown_flush_s": 5.0,
            "grace_s": 1.0,
            **options,
        }
        running = RunningWorker(WorkerConfig(**fields))  # type: ignore[arg-type]
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


class Announcements:
    """A Unix socket that `announce_then_sleep` handlers send their child's pid to."""

    def __init__(self) -> None:
        # A path, not an abstract name: a task's arguments may not hold a NUL character.
        self.address = f"/tmp/conveyor-test-{uuid.uuid4().hex[:12]}.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.address)
        self._sock.listen()
        self._sock.settimeout(DONE_S)

    def next_pid(self) -> int:
        conn, _ = self._sock.accept()
        with conn:
            return int(conn.recv(64))

    def close(self) -> None:
        self._sock.close()
        Path(self.address).unlink(missing_ok=True)


@pytest.fixture
def announcements() -> Iterator[Announcements]:
    listener = Announcements()
    yield listener
    listener.close()


class LogEvent(logging.Handler):
    """Sets `event` when a record whose message contains `text` is logged, from any thread."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def log_event() -> Iterator[Callable[[str], threading.Event]]:
    handlers: list[LogEvent] = []
    root = logging.getLogger("conveyor")
    level = root.level
    root.setLevel(logging.DEBUG)

    def watch(text: str) -> threading.Event:
        handler = LogEvent(text)
        handlers.append(handler)
        root.addHandler(handler)
        return handler.event

    yield watch
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


def wait_for(condition: Callable[[], bool], timeout_s: float = DONE_S) -> float:
    """Poll `condition` (for states no event announces); return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
    return time.monotonic() - started


# ---- tests -------------------------------------------------------------------------------------


def test_tasks_run_and_their_results_are_recorded(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    echo = client.submit("echo", {"x": 1})
    digest = client.submit("sha256", "hello")
    chatty = client.submit(f"{TASKS}:chatter", "out", "err")
    failing = client.submit(f"{TASKS}:raise_value_error", "boom")
    timing_out = client.submit("sleep", 30, timeout_s=0.5)
    running = start_worker(burst=True)

    assert running.join() == 0
    assert client.result(echo.id).result == {"x": 1}
    assert client.result(digest.id).result == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    chatted = client.get(chatty.id)
    assert (chatted.result, chatted.attempt_log[0].stdout_tail) == ("done", "out")
    assert chatted.attempt_log[0].stderr_tail == "err"
    failed = client.get(failing.id)
    assert (failed.state, failed.error) == (TaskState.FAILED, "ValueError: boom")
    assert "raise ValueError(message)" in (failed.attempt_log[0].traceback or "")
    assert client.get(timing_out.id).state is TaskState.TIMED_OUT
    assert chatted.attempt_log[0].worker_id == running.worker.worker_id
    assert client.workers() == [], "a burst worker deregisters when it is done"


def test_burst_mode_waits_for_dependents_then_exits(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    first = client.submit("echo", 1, name="first")
    second = client.submit("echo", {"$result": first.id}, depends_on=[first.id])
    third = client.submit("echo", {"$result": second.id}, depends_on=[second.id])

    assert start_worker(burst=True).join() == 0
    assert client.result(third.id).result == 1


def test_burst_mode_exits_at_once_on_an_empty_queue(
    start_worker: Callable[..., RunningWorker],
) -> None:
    started = time.monotonic()
    assert start_worker(burst=True).join() == 0
    assert time.monotonic() - started < 5.0


def test_a_cancelled_running_task_is_killed_within_about_one_heartbeat(
    client: Client,
    start_worker: Callable[..., RunningWorker],
    announcements: Announcements,
) -> None:
    start_worker()
    task = client.submit(f"{TASKS}:announce_then_sleep", announcements.address, 60)
    pid = announcements.next_pid()

    client.cancel(task.id)
    took_s = wait_for(lambda: pid_gone(pid))

    assert took_s < HEARTBEAT_S + 1.0
    assert client.get(task.id).state is TaskState.CANCELLED
    after = client.submit("echo", "still working")
    assert client.result(after.id, timeout_s=DONE_S).result == "still working"


def test_prefetched_tasks_wait_for_a_slot_and_are_handed_back_unstarted_on_stop(
    client: Client,
    start_worker: Callable[..., RunningWorker],
    announcements: Announcements,
) -> None:
    running = start_worker(concurrency=1, prefetch=2, grace_s=0.2)
    long = client.submit(f"{TASKS}:announce_then_sleep", announcements.address, 60, priority=1)
    announcements.next_pid()
    waiting = [client.submit("echo", n) for n in range(2)]
    wait_for(lambda: all(client.get(t.id).state is TaskState.RUNNING for t in waiting))

    assert running.stop() == 0
    for task in (long, *waiting):
        handed_back = client.get(task.id)
        assert (handed_back.state, handed_back.retries_used) == (TaskState.QUEUED, 0)
        outcomes = [a.outcome for a in handed_back.attempt_log]
    assert Outcome.HANDED_BACK in outcomes
    # A long-poll answered during the drain may lease it once more; deregistering then gives it
    # back as lost. Either way no attempt failed and no retry was spent.
    assert set(outcomes) <= {Outcome.HANDED_BACK, Outcome.LOST}
    assert "unstarted" in (client.get(waiting[0].id).attempt_log[-1].error or "")


def test_prefetch_runs_everything_in_burst_mode(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    tasks = [client.submit("echo", n) for n in range(30)]
    assert start_worker(burst=True, concurrency=1, prefetch=4).join() == 0
    assert [client.result(t.id).result for t in tasks] == list(range(30))


def test_a_task_whose_handler_the_worker_refuses_waits_for_one_that_runs_it(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    task = client.submit(f"{TASKS}:getpid")
    assert start_worker(burst=True, policy=HandlerPolicy()).join() == 0
    waiting = client.get(task.id)
    assert (waiting.state, waiting.attempts) == (TaskState.QUEUED, 0)
    assert start_worker(burst=True, policy=HandlerPolicy(allow_modules=("tests",))).join() == 0
    assert client.result(task.id).state is TaskState.SUCCEEDED


def test_a_refused_handler_fails_the_task_with_the_reason(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    # A worker that does not advertise what it runs (as embedded mode's) is offered anything.
    task = client.submit(f"{TASKS}:getpid")
    assert start_worker(burst=True, policy=HandlerPolicy(), advertise=False).join() == 0
    outcome = client.result(task.id)
    assert outcome.state is TaskState.FAILED
    assert "--allow-module tests" in (outcome.error or "")


def test_results_are_reported_promptly_while_a_long_poll_is_waiting(
    client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    # With concurrency 2 and one task at a time, a slot is always free, so a lease long-poll of
    # 10 s is pending whenever a task ends: reporting must not wait for it.
    start_worker(lease_wait_s=10.0)
    latencies: list[float] = []
    for n in range(20):
        started = time.monotonic()
        task = client.submit("echo", n)
        outcome = client.result(task.id, timeout_s=DONE_S)
        latencies.append(time.monotonic() - started)
        assert outcome.result == n
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5, latencies
    assert latencies[-1] < 2.0, latencies


def test_reports_survive_a_short_server_outage(
    server: LiveServer,
    client: Client,
    start_worker: Callable[..., RunningWorker],
    announcements: Announcements,
    log_event: Callable[[str], threading.Event],
) -> None:
    undelivered = log_event("not delivered")
    delivered = log_event("reports delivered again")
    start_worker()
    task = client.submit(f"{TASKS}:announce_then_sleep", announcements.address, 0.5)
    announcements.next_pid()

    server.stop()
    assert undelivered.wait(DONE_S)  # the task ended while the server was away
    server.start()
    assert delivered.wait(DONE_S)

    outcome = client.result(task.id, timeout_s=DONE_S)
    assert (outcome.state, outcome.result) == (TaskState.SUCCEEDED, 0.5)
    assert client.get(task.id).attempts == 1  # the same attempt: nothing ran twice


def test_a_worker_the_server_forgot_registers_again(
    client: Client,
    start_worker: Callable[..., RunningWorker],
    log_event: Callable[[str], threading.Event],
) -> None:
    registered_again = log_event("registering again")
    running = start_worker()
    wait_for(lambda: running.worker.worker_id is not None)
    old_id = running.worker.worker_id
    assert old_id is not None

    client.deregister_worker(old_id)
    assert registered_again.wait(DONE_S)
    wait_for(lambda: running.worker.worker_id != old_id)

    task = client.submit("echo", "again")
    assert client.result(task.id, timeout_s=DONE_S).result == "again"
    with pytest.raises(NotFoundError):
        client.worker(old_id)  # deregistered: gone from the API
    assert client.worker(running.worker.worker_id or "").state == "alive"


def test_a_worker_started_before_its_server_waits_for_it(
    tmp_path: Path,
    importable_tests: None,
    log_event: Callable[[str], threading.Event],
) -> None:
    unreachable = log_event("cannot register")
    live = LiveServer(tmp_path / "late.db", free_port())
    running = RunningWorker(
        WorkerConfig(server_url=live.url, concurrency=1, burst=True, http_timeout_s=5.0)
    )
    try:
        assert unreachable.wait(DONE_S)
        assert running.thread.is_alive()
        live.start()
        assert running.join() == 0
        with Client(live.url) as client:
            assert client.workers() == [], "it registered, ran its burst and deregistered"
    finally:
        running.worker.stop()
        live.stop()


def test_run_submits_and_waits_for_the_result_in_one_call(
    server: LiveServer, client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    start_worker()
    done = client.run("echo", "hi", wait_s=DONE_S)
    assert (done.done, done.state, done.result) == (True, TaskState.SUCCEEDED, "hi")
    later = client.run("echo", 1, delay_s=3600, wait_s=0.2)
    assert (later.done, later.state) == (False, TaskState.PENDING)

    async def with_async_client() -> object:
        async with AsyncClient(server.url) as aclient:
            return (await aclient.run("echo", 2, wait_s=DONE_S)).result

    assert asyncio.run(with_async_client()) == 2


def test_both_clients_speak_the_servers_api(
    server: LiveServer, client: Client, start_worker: Callable[..., RunningWorker]
) -> None:
    async def with_async_client() -> None:
        async with AsyncClient(server.url) as aclient:
            first = await aclient.submit("echo", "a", name="first", labels={"team": "x"})
            [second] = await aclient.submit_batch(
                [TaskSpec(handler="echo", args=["b"], depends_on=[first.id])]
            )
            assert (await aclient.get(second.id)).depends_on == [first.id]
            page = await aclient.list(state="queued", labels={"team": "x"})
            assert [t.id for t in page.tasks] == [first.id]
            assert {t.id async for t in aclient.iter_tasks(page_size=1)} == {first.id, second.id}
            assert (await aclient.status()).counts["queued"] == 1
            assert (await aclient.health()).status == "ok"
            assert "server" in (await aclient.monitor()).model_dump()
            start_worker()
            done = await aclient.result(second.id, timeout_s=DONE_S)
            assert (done.done, done.result) == (True, "b")
            with pytest.raises(ConflictError):
                await aclient.cancel(second.id)  # it has succeeded
            await aclient.delete(second.id)
            with pytest.raises(NotFoundError):
                await aclient.get(second.id)
            [worker] = await aclient.workers()
            assert (await aclient.worker(worker.id)).state == "alive"

    asyncio.run(with_async_client())
    [worker] = client.workers()
    wait_for(lambda: "cpu_percent" in client.worker(worker.id).metrics)  # sent by heartbeats
    metrics = client.worker(worker.id).metrics
    assert isinstance(metrics["cpu_per_core_percent"], list)
    assert isinstance(metrics["gpus"], list)  # empty without an NVIDIA driver
    failing = client.submit(f"{TASKS}:raise_value_error", "x")
    assert client.result(failing.id, timeout_s=DONE_S).state is TaskState.FAILED
    assert client.retry(failing.id).state in (TaskState.QUEUED, TaskState.RUNNING)
    with pytest.raises(InvalidSpecError) as caught:
        client.submit("echo", depends_on=["no-such-task"])
    assert caught.value.field == "depends_on"


# ---- the worker as a program -------------------------------------------------------------------


def start_worker_process(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "--server", url, *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_drains_hands_back_a_long_task_and_deregisters(
    server: LiveServer, client: Client, announcements: Announcements
) -> None:
    proc = start_worker_process(server.url, "-c", "2", "--grace-s", "1", "--allow-module", "tests")
    try:
        short = client.submit(f"{TASKS}:announce_then_sleep", announcements.address, 0.3)
        long = client.submit(f"{TASKS}:announce_then_sleep", announcements.address, 60)
        pids = [announcements.next_pid(), announcements.next_pid()]

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(DONE_S) == 0
        took_s = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()

    assert 1.0 <= took_s < 5.0, stderr
    assert all(pid_gone(pid) for pid in pids)
    assert client.get(short.id).state is TaskState.SUCCEEDED  # finished within the grace period
    handed_back = client.get(long.id)
    assert (handed_back.state, handed_back.retries_used) == (TaskState.QUEUED, 0)
    outcomes = [a.outcome for a in handed_back.attempt_log]
    assert Outcome.HANDED_BACK in outcomes
    # A long-poll answered during the drain may lease it once more; deregistering then gives it
    # back as lost. Either way no attempt failed and no retry was spent.
    assert set(outcomes) <= {Outcome.HANDED_BACK, Outcome.LOST}
    assert client.workers() == [], "it deregistered after draining"
    assert "SIGTERM received: draining" in stderr
    assert "Traceback" not in stderr


def test_the_cli_says_once_per_try_that_the_server_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = start_worker_process(url, "--burst")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DONE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # The message is constant; what varies is in fields that a reader (or a parser) finds.
    assert "conveyor.worker.registration: cannot register; retrying error=" in line, line
    assert f"server={url}" in line and "is unreachable" in line and "retry_in_s=" in line


def test_log_format_json_writes_each_record_as_one_json_object() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = start_worker_process(url, "--burst", "--log-format", "json")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DONE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "conveyor.worker.registration"
    assert entry["message"] == "cannot register; retrying"
    assert entry["server"] == url and "is unreachable" in entry["error"]
    assert isinstance(entry["retry_in_s"], float)


def test_a_worker_labelled_on_the_command_line_takes_the_tasks_that_require_its_label(
    server: LiveServer, client: Client
) -> None:
    task = client.submit(TaskSpec(handler="echo", args=["eu"], require={"zone": "eu"}))
    unlabelled = start_worker_process(server.url, "--burst")
    _, stderr = unlabelled.communicate(timeout=DONE_S)
    assert unlabelled.returncode == 0, stderr  # nothing it may take: done at once
    assert client.get(task.id).state is TaskState.QUEUED

    labelled = start_worker_process(server.url, "--burst", "--label", "zone=eu,disk=ssd")
    _, stderr = labelled.communicate(timeout=DONE_S)
    assert labelled.returncode == 0, stderr
    assert client.result(task.id, timeout_s=DONE_S).result == "eu"
