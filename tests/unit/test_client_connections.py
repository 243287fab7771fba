"""The client's connections: a keep-alive connection the server closed just as it was reused, and
an answer the server sent before it had read the whole request (413).

A scripted server on 127.0.0.1 plays each part exactly, so that the races are not left to
chance: it answers a first call on a connection, then reads the next call in full and closes
without answering, as a server whose keep-alive timeout fires while the request is in flight
(the request was sent, but never handled).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.api.schemas import HealthOut, HeartbeatOut, TaskOut
from conveyor.client import AsyncClient, Client
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.states import TaskState
from conveyor.errors import InvalidSpecError, ServerUnavailableError

NOW = datetime(2026, 12, 7, tzinfo=UTC)
HEALTH = HealthOut(status="ok", version="1", store="sqlite").model_dump_json().encode()
BEAT = HeartbeatOut(stop=[], drain=False, lease_s=30).model_dump_json().encode()
TASK = TaskOut(
    id="t1", name=None, handler="echo", args=[], kwargs={}, queue="default", priority=0,
    state=TaskState.QUEUED, reason=None, depends_on=[], run_at=None, timeout_s=None,
    max_retries=0, retries_used=0, attempts=0, resources={}, key="k", labels={}, result=None,
    error=None, worker_id=None, lease_expires_at=None, created_at=NOW, updated_at=NOW,
    started_at=None, finished_at=None,
).model_dump_json().encode()  # fmt: skip


def ok(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """(request line, body) of the next request on `conn`; None if the client closed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65_536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        (int(v) for n, _, v in (line.partition(b":") for line in lines[1:])
         if n.strip().lower() == b"content-length"),
        0,
    )  # fmt: skip
    while len(body) < length:
        chunk = conn.recv(65_536)
        if not chunk:
            return None
        body += chunk
    return lines[0], body


class RacingServer:
    """On its first connection, answers the first request, then reads the second and closes
    without a word. Later connections are answered normally. Every request line is kept."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request line)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        number = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            threading.Thread(target=self._connection, args=(conn, number), daemon=True).start()

    def _connection(self, conn: socket.socket, number: int) -> None:
        with conn:
            served = 0
            while (request := read_request(conn)) is not None:
                self.requests.append((number, request[0]))
                if number == 1 and served == 1:
                    return  # the keep-alive timeout fired: closed, unanswered
                conn.sendall(self.answer(request[0]))
                served += 1

    def close(self) -> None:
        self.listener.close()


def answer_by_path(line: bytes) -> bytes:
    if b" /health " in line:
        return ok(HEALTH)
    if b"/heartbeat " in line:
        return ok(BEAT)
    if line.startswith(b"POST /api/v1/tasks "):
        return ok(TASK, "201 Created")
    return ok(b'{"detail": "no such route"}', "404 Not Found")


@pytest.fixture
def racing() -> Iterator[RacingServer]:
    server = RacingServer(answer_by_path)
    yield server
    server.close()


def test_a_read_is_sent_again_on_a_fresh_connection(racing: RacingServer) -> None:
    with Client(racing.url, timeout_s=5, connection="rest") as client:
        client.health()
        assert client.health().status == "ok"
    assert [n for n, _ in racing.requests] == [1, 1, 2], "sent twice, the second time anew"


def test_an_async_read_is_sent_again_on_a_fresh_connection(racing: RacingServer) -> None:
    async def run() -> str:
        async with AsyncClient(racing.url, timeout_s=5, connection="rest") as client:
            await client.health()
            return (await client.health()).status

    assert asyncio.run(run()) == "ok"
    assert [n for n, _ in racing.requests] == [1, 1, 2]


def test_a_heartbeat_is_sent_again_it_is_safe_to_repeat(racing: RacingServer) -> None:
    with WorkerConnection(racing.url, timeout_s=5, connection="rest") as worker:
        worker.heartbeat("w1", [])
        assert worker.heartbeat("w1", []).lease_s == 30
    assert [n for n, _ in racing.requests] == [1, 1, 2]


def test_a_submit_with_a_key_is_sent_again(racing: RacingServer) -> None:
    with Client(racing.url, timeout_s=5, connection="rest") as client:
        client.health()
        assert client.submit("echo", key="k").id == "t1"
    assert [n for n, _ in racing.requests] == [1, 1, 2]


def test_a_submit_without_a_key_is_not_sent_twice(racing: RacingServer) -> None:
    # The server may have stored it before the connection broke: a second send could store a
    # second task. The caller decides (and learns that the answer never came).
    with Client(racing.url, timeout_s=5, connection="rest") as client:
        client.health()
        with pytest.raises(ServerUnavailableError):
            client.submit("echo")
    assert [n for n, _ in racing.requests] == [1, 1]


# ---- an answer before the whole request was read ---------------------------------------------

LIMIT_DETAIL = {"detail": "the request body is larger than this server's limit of 65,536 bytes"}


@contextmanager
def refusing_server() -> Iterator[str]:
    """Reads a request's head, answers 413 and closes with the body unread (the kernel then
    resets the connection under the client, still sending)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                body = json.dumps(LIMIT_DETAIL).encode()
                conn.sendall(
                    b"HTTP/1.1 413 Content Too Large\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def big_batch() -> list[Any]:
    from conveyor.core.spec import TaskSpec

    return [TaskSpec(handler="echo", args=["x" * 200_000]) for _ in range(50)]  # ~10 MB


def test_a_413_sent_while_the_body_is_still_going_is_read_not_unreachable() -> None:
    with (
        refusing_server() as url,
        Client(url, timeout_s=5, connection="rest") as client,
        pytest.raises(InvalidSpecError) as refused,
    ):
        client.submit_batch(big_batch())
    assert "too large" in str(refused.value)
    assert "65,536 bytes" in str(refused.value)
