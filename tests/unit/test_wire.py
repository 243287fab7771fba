"""The lean HTTP client: where calls go, chunked and close-delimited answers, a server that
dropped an idle connection, and an unreachable server, for the sync and the async wire."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conveyor.client.wire import AsyncWire, SyncWire, Target, WireError

ANSWERS = {
    b"/plain": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}',
    b"/chunked": b'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"b\r\n4\r\n":2}\r\n0\r\n\r\n',
    b"/close": b'HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nConnection: close\r\n\r\n{"detail":"x"}',
}


def _serve(listener: socket.socket, stop: threading.Event, closed: threading.Semaphore) -> None:
    """Answers each request by its path, then closes the connection and says so on `closed`."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with closing_said(conn, closed):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if not data:
                continue
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length")),
                0,
            )  # fmt: skip
            while len(body) < length:
                body += conn.recv(4096)
            path = head.split(b" ")[1].split(b"?")[0]
            # Every call carries the base URL's path; an answer of 404 shows if one did not.
            answer = (
                ANSWERS.get(path.removeprefix(b"/prefix")) if path.startswith(b"/prefix/") else None
            )
            conn.sendall(answer or b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            # One request per connection: the next call finds this one closed and reconnects.


@contextmanager
def closing_said(conn: socket.socket, closed: threading.Semaphore) -> Iterator[None]:
    try:
        yield
    finally:
        conn.close()
        closed.release()


@pytest.fixture
def closed() -> threading.Semaphore:
    """Released once per connection the server has closed: a test waits for it before its next
    call, which must then find the connection closed (else the call could race the close)."""
    return threading.Semaphore(0)


@pytest.fixture
def server(closed: threading.Semaphore) -> Iterator[Target]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, stop, closed), daemon=True)
    thread.start()
    yield Target("http", "127.0.0.1", listener.getsockname()[1], "/prefix")
    stop.set()
    thread.join()
    listener.close()


def test_where_calls_go(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    assert Target.of("http://h:81/base/") == Target("http", "h", 81, "/base")
    assert Target.of("https://h") == Target("https", "h", 443, "")
    assert Target.of("http://[::1]:8000").host_header == "[::1]:8000"  # type: ignore[union-attr]
    assert Target.of("ftp://h") is None
    monkeypatch.setenv("http_proxy", "http://proxy:3128")
    assert Target.of("http://example.org") is None  # httpx knows how to use the proxy


def test_sync_wire_reads_every_kind_of_answer(server: Target, closed: threading.Semaphore) -> None:
    wire = SyncWire(server)
    try:
        for path, status, content in [
            ("/plain", 200, b'{"a":1}'),
            ("/chunked", 201, b'{"b":2}'),
            ("/close", 503, b'{"detail":"x"}'),
            ("/plain", 200, b'{"a":1}'),
        ]:
            answer = wire.request(
                "POST", path, (("wait", "1"),), {}, b"{}", connect_timeout_s=5, read_timeout_s=5
            )
            assert (answer.status_code, answer.content) == (status, content)
            assert closed.acquire(timeout=5)
        assert answer.json() == {"a": 1} and answer.is_success
    finally:
        wire.close()


def test_async_wire_reads_every_kind_of_answer(server: Target, closed: threading.Semaphore) -> None:
    async def main() -> None:
        wire = AsyncWire(server)
        try:
            plain, chunked, busy = await asyncio.gather(
                *(
                    wire.request("GET", path, (), {}, None, connect_timeout_s=5, read_timeout_s=5)
                    for path in ("/plain", "/chunked", "/close")
                )
            )
            assert plain.content == b'{"a":1}'
            assert (chunked.status_code, chunked.content) == (201, b'{"b":2}')
            assert (busy.status_code, busy.headers["retry-after"]) == (503, "2")
            for _ in range(3):
                assert await asyncio.to_thread(closed.acquire, timeout=5)
            again = await wire.request(
                "GET", "/plain", (), {}, None, connect_timeout_s=5, read_timeout_s=5
            )
            assert again.status_code == 200
        finally:
            await wire.close()

    asyncio.run(main())


def test_an_unreachable_server_is_a_wire_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    target = Target("http", "127.0.0.1", port, "")
    with pytest.raises(WireError):
        SyncWire(target).request("GET", "/", (), {}, None, connect_timeout_s=1, read_timeout_s=1)

    async def main() -> None:
        with pytest.raises(WireError):
            await AsyncWire(target).request(
                "GET", "/", (), {}, None, connect_timeout_s=1, read_timeout_s=1
            )

    asyncio.run(main())
