"""The server's HTTP front door over real sockets: slow clients, keep-alive, oversized requests.

Most tests serve the app in a thread with uvicorn configured as `conveyor server` configures it
(`conveyor.server.serving.uvicorn_config`), with short deadlines so that a slow client is cut
off in a fraction of a second. One runs the real `conveyor server` with its default deadlines.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.client import Client
from conveyor.engine import Engine, EngineSettings
from conveyor.server import ServerSettings, create_app, request_shutdown
from conveyor.store.sqlite import SQLiteStore
from tests.integration.test_server_cli import server_process

DEADLINE_S = 0.5
"""The head and body deadlines of the test server."""
CUT_OFF_S = 5.0
"""Generous bound on how long after its deadline a slow client is cut off."""


class LiveServer:
    def __init__(self, db: Path, settings: ServerSettings | None = None) -> None:
        from conveyor.server.serving import uvicorn_config

        self.store = SQLiteStore(db)
        self.engine = Engine(self.store, settings=EngineSettings())
        self.app = create_app(self.engine, settings or ServerSettings(timer_interval_s=0.1))
        config = uvicorn_config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            heartbeat_interval_s=5.0,
            head_timeout_s=DEADLINE_S,
            body_timeout_s=DEADLINE_S,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        give_up_at = time.monotonic() + 15
        while not self.server.started:  # uvicorn offers no event to wait on
            assert self.thread.is_alive() and time.monotonic() < give_up_at, "did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        request_shutdown(self.app)
        self.server.should_exit = True
        self.thread.join(15)
        self.store.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path / "http.db") as server:
        yield server


def closed_within(sock: socket.socket, timeout_s: float, drip: bytes = b"") -> tuple[bool, bytes]:
    """Read (and send `drip` a byte at a time, every 50 ms) until the server closes the
    connection or `timeout_s` passes: (closed, what the server sent)."""
    received = b""
    give_up_at = time.monotonic() + timeout_s
    pending = list(drip)
    while time.monotonic() < give_up_at:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                chunk = sock.recv(65_536)
            except ConnectionResetError:
                return True, received
            if not chunk:
                return True, received
            received += chunk
        elif pending:
            try:
                sock.send(bytes([pending.pop(0)]))
            except OSError:
                return True, received
    return False, received


SLOW_HEAD = b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\n" + b"".join(
    b"X-Slow-%d: a valid header that never ends the head\r\n" % i for i in range(100)
)
"""A head that is valid as far as it goes, and never ends."""


def test_a_head_sent_a_byte_at_a_time_is_cut_off(live: LiveServer) -> None:
    with live.connect() as sock:
        started = time.monotonic()
        closed, answer = closed_within(sock, DEADLINE_S + CUT_OFF_S, drip=SLOW_HEAD)
        assert closed, "the slow client still held its connection"
        assert time.monotonic() - started < DEADLINE_S + CUT_OFF_S
        assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_connection_that_sends_nothing_is_closed(live: LiveServer) -> None:
    with live.connect() as sock:
        closed, answer = closed_within(sock, DEADLINE_S + CUT_OFF_S)
        assert closed and answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_body_sent_a_byte_at_a_time_is_cut_off_and_never_handled(live: LiveServer) -> None:
    body = json.dumps({"handler": "echo", "args": ["x" * 200]}).encode()
    head = (
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with live.connect() as sock:
        sock.sendall(head)
        closed, answer = closed_within(sock, DEADLINE_S + CUT_OFF_S, drip=body)
        assert closed, "the slow body still held its connection"
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert live.engine.list_tasks(limit=10) == [], "nothing was submitted"


def test_headers_without_end_are_refused_past_the_head_limit(live: LiveServer) -> None:
    from conveyor.server.serving import MAX_HEAD_BYTES

    with live.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(MAX_HEAD_BYTES // 1000 + 2):
                sock.sendall(b"X-Filler-%d: %s\r\n" % (i, b"y" * 1000))
        except OSError:
            pass  # closed under us: the answer is read below
        closed, answer = closed_within(sock, CUT_OFF_S)
        assert closed and answer.startswith(b"HTTP/1.1 431 "), answer


def test_prompt_clients_and_long_polls_are_not_cut_off(live: LiveServer) -> None:
    with Client(live.url, timeout_s=10) as client:
        task = client.submit("echo", "hello")
        started = time.monotonic()
        result = client.result(task.id, wait_s=4 * DEADLINE_S, timeout_s=4 * DEADLINE_S)
        assert not result.done
        assert time.monotonic() - started >= 4 * DEADLINE_S  # held longer than any deadline
        assert client.health().status == "ok"


def test_the_persistent_connection_outlives_the_deadlines(live: LiveServer) -> None:
    # The deadlines bound how long a request takes to arrive; a WebSocket is not a request
    # once upgraded, and must stay open however long it lasts.
    import asyncio

    import websockets

    async def hold() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/stream") as stream:
            await asyncio.sleep(4 * DEADLINE_S)
            await asyncio.wait_for(await stream.ping(), CUT_OFF_S)

    asyncio.run(hold())


# ---- keep-alive ---------------------------------------------------------------------------------


def served_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> Any:
    """The uvicorn config `conveyor server ARGS` would serve with (the server is not run)."""
    from conveyor.cli import server as server_cli

    seen: list[Any] = []
    monkeypatch.setattr(server_cli._Server, "run", lambda self, *a, **k: seen.append(self.config))
    result = CliRunner().invoke(cli, ["server", "--db", str(tmp_path / "k.db"), *args])
    assert result.exit_code == 0, result.output
    [config] = seen
    return config


def test_the_keep_alive_outlasts_the_workers_heartbeat_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = served_config(monkeypatch, tmp_path)
    assert default.timeout_keep_alive >= 3 * 5.0, "3 heartbeats of 5 s"
    slow = served_config(monkeypatch, tmp_path, "--lease-s", "120", "--heartbeat-s", "30")
    assert slow.timeout_keep_alive >= 3 * 30.0


# ---- the real command ---------------------------------------------------------------------------

HEAD_TIMEOUT_S = 10.0
"""conveyor.server.serving.HEAD_TIMEOUT_S, the deadline `conveyor server` applies."""


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[str]:
    """`conveyor server` in a child process, with this checkout's code; yields its URL."""
    with server_process(tmp_path) as (proc, url):
        yield url
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.mark.slow
def test_conveyor_server_cuts_off_a_slowloris(real_server: str) -> None:
    port = int(real_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        closed, answer = closed_within(sock, HEAD_TIMEOUT_S + CUT_OFF_S, drip=SLOW_HEAD)
        assert closed, f"still connected after {HEAD_TIMEOUT_S + CUT_OFF_S} s"
        assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_conveyor_apply_over_the_limit_says_too_large_and_the_limit(
    real_server: str, tmp_path: Path
) -> None:
    jobs = tmp_path / "big.yaml"
    jobs.write_text(
        "tasks:\n" + "".join(f"  - {{handler: echo, args: [{'x' * 200_000}]}}\n" for _ in range(50))
    )
    result = CliRunner().invoke(cli, ["apply", str(jobs), "--server", real_server])
    assert result.exit_code == 1, result.output
    assert "too large" in result.output, result.output
    assert "1,048,576 bytes" in result.output, result.output
    assert "unreachable" not in result.output
