"""The persistent connection, client side: every call over one WebSocket, many in flight at once.

`SyncStream` serves the blocking Client and the worker (any number of threads share it);
`AsyncStream` serves the AsyncClient. Both open the connection on first use, send each call as
a frame (conveyor.api.frames) under an id of their own, and hand each answer to the call it
belongs to, in whatever order answers come. A call whose connection breaks before its answer
fails with ServerUnavailableError (its outcome unknown, as when an HTTP connection breaks); the
next call opens a new connection. A call that could not be sent at all, on a connection that was
already closed (the server went away while it was idle), is sent again on a new one: it never
reached the server.

A server that has no persistent connection (older, or behind a proxy that refuses WebSockets)
refuses the handshake: `StreamUnavailable`, and the session falls back to REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect

from conveyor.api import frames
from conveyor.client.answers import Following, Reply, refused, unreachable
from conveyor.client.calls import Call
from conveyor.client.wsocket import BlockingWebSocket, ProxyInTheWay
from conveyor.errors import InvalidSpecError, ServerUnavailableError

_MAX_FRAME = 64 * 1024 * 1024
"""The largest answer accepted (a page of tasks with big results); the server bounds requests."""


class StreamUnavailable(Exception):
    """The server does not offer the persistent connection (the handshake was refused)."""


def stream_url(base_url: str) -> str:
    """ws(s)://host:port/prefix/api/v1/stream for an http(s) server URL."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit(
        parts._replace(scheme=scheme, path=parts.path.rstrip("/") + frames.STREAM_PATH)
    )


def _frame(call_id: int, call: Call[Any]) -> bytes:
    header: dict[str, Any] = {"id": call_id, "op": call.op.name}
    params = call.params.model_dump(mode="json", exclude_defaults=True)
    if params:
        header["params"] = params
    if call.secret:
        header["secret"] = call.secret
    return frames.encode(header, call.body_bytes() or b"")


def _reply(header: dict[str, Any], body: bytes) -> Reply:
    retry_after = header.get("retry_after")
    return Reply(
        int(header.get("status", 500)),
        body,
        float(retry_after) if isinstance(retry_after, int | float) else None,
    )


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _refused(base_url: str, exc: Exception) -> Exception:
    """What a failed handshake means: a refused token (said as REST says it), no persistent
    connection here (the session falls back to REST), or no server at all."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return refused(Reply(status, bytes(exc.response.body or b"")))
        return StreamUnavailable(f"{base_url} answered {status} to the WebSocket handshake")
    if isinstance(exc, InvalidURI):
        return StreamUnavailable(str(exc))
    return unreachable(base_url, exc)


_MESSAGE_TOO_BIG = 1009


def _broken(url: str, exc: Exception) -> Exception:
    """The error of a call whose connection broke before its answer."""
    if (
        isinstance(exc, ConnectionClosed)
        and exc.rcvd is not None
        and exc.rcvd.code == _MESSAGE_TOO_BIG
    ):
        return InvalidSpecError(
            "request too large: the server closed the connection on a message this big; "
            "send fewer or smaller tasks per request"
        )
    return ServerUnavailableError(f"the connection to {url} broke before the answer: {exc}")


@dataclass(slots=True)
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    """Set while answers wait to be taken (`replies`), and once the call has failed."""
    replies: list[Reply] = field(default_factory=list)
    final: bool = False
    """The call's last answer is among `replies`: the server sends no more."""
    error: Exception | None = None


class SyncStream:
    """One WebSocket shared by every thread of a blocking client or worker.

    There is no reader thread of its own: a thread waiting for its answer reads the connection
    while no other does, handing each answer it reads to the call it belongs to, until its own
    comes; then the next waiting thread takes over. A lone caller thus pays no hand-over.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = url
        self.url = stream_url(url)
        self._token = token
        self._timeout_s = timeout_s
        self._ssl = ssl_context
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards the fields below
        self._reading = threading.Lock()  # held by the thread reading the connection
        self._turn = threading.Condition(self._lock)
        self._conn: BlockingWebSocket | None = None
        self._pending: dict[int, _Pending] = {}

    def replies(self, call: Call[Any]) -> Following[Reply]:
        """Send `call`; its answers as they come: one, or several for a call that answers more
        than once (a following lease), each within the call's time of the one before."""
        conn, call_id, pending = self._start(call)

        def stop() -> None:
            with self._lock:
                open_ = self._pending.get(call_id) is pending and not pending.final
            if open_:
                with contextlib.suppress(ConnectionClosed):  # the call then fails as it reads
                    conn.send(frames.encode({"id": call_id, "stop": True}))

        return Following(self._answers(call, conn, call_id, pending), stop)

    def _answers(
        self, call: Call[Any], conn: BlockingWebSocket, call_id: int, pending: _Pending
    ) -> Iterator[Reply]:
        try:
            while True:
                self._await(
                    conn, call_id, pending, time.monotonic() + self._timeout_s + call.hold_s
                )
                with self._lock:
                    taken, pending.replies = pending.replies, []
                    final = pending.final
                    if not final:
                        pending.done.clear()
                yield from taken
                if final:
                    return
        finally:
            with self._lock:
                self._pending.pop(call_id, None)

    def _start(self, call: Call[Any]) -> tuple[BlockingWebSocket, int, _Pending]:
        """Send `call`: the connection it went on, its id and where its answers will be."""
        for attempt in (1, 2):
            conn = self._connection()
            call_id = next(self._ids)
            pending = _Pending()
            with self._lock:
                self._pending[call_id] = pending
            try:
                conn.send(_frame(call_id, call))
            except ConnectionClosed as exc:
                self._lost(conn, exc)
                with self._lock:
                    self._pending.pop(call_id, None)
                if attempt == 1:
                    continue  # never sent: the server closed the connection while it was idle
                raise _broken(self.url, exc) from exc
            return conn, call_id, pending
        raise AssertionError("unreachable")

    def _connection(self) -> BlockingWebSocket:
        with self._lock:
            if self._conn is not None:
                if self._reading.acquire(blocking=False):
                    # Nobody reads while nobody waits: take in what came meanwhile, so that a
                    # connection the server closed is known closed before a call goes on it.
                    try:
                        self._conn.poll()
                    finally:
                        self._reading.release()
                        self._turn.notify_all()
                return self._conn
            try:
                self._conn = BlockingWebSocket.connect(
                    self.url,
                    headers=_headers(self._token),
                    subprotocols=[frames.SUBPROTOCOL],
                    max_size=_MAX_FRAME,
                    open_timeout=self._timeout_s,
                    ssl_context=self._ssl,
                )
            except ProxyInTheWay as exc:
                raise StreamUnavailable(str(exc)) from exc
            except (OSError, TimeoutError, InvalidStatus, InvalidURI) as exc:
                raise _refused(self.base_url, exc) from exc
            except Exception as exc:  # a handshake that is not a WebSocket's
                raise StreamUnavailable(f"{self.url}: {exc}") from exc
            return self._conn

    def _await(
        self, conn: BlockingWebSocket, call_id: int, pending: _Pending, deadline: float
    ) -> None:
        """Until answers of the call wait in `pending`; raises if none comes by `deadline`."""
        while not pending.done.is_set():
            if self._reading.acquire(blocking=False):
                try:
                    self._read_until(conn, pending, deadline)
                finally:
                    self._reading.release()
                    with self._turn:
                        self._turn.notify_all()  # another waiting thread reads next
            else:
                with self._turn:
                    if not pending.done.is_set():
                        self._turn.wait(timeout=max(0.0, deadline - time.monotonic()))
            if not pending.done.is_set() and time.monotonic() > deadline:
                with self._lock:
                    self._pending.pop(call_id, None)
                raise ServerUnavailableError(f"no answer from {self.url} in time")
        if pending.error is not None:
            raise pending.error

    def _read_until(self, conn: BlockingWebSocket, mine: _Pending, deadline: float) -> None:
        while not mine.done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                data = conn.recv(timeout=left)
            except TimeoutError:
                return
            except ConnectionClosed as exc:
                self._lost(conn, exc)
                return
            try:
                header, body = frames.decode(data)
            except frames.FrameError:
                continue  # not ours to understand: skip it
            call_id, more = header.get("id"), header.get("more") is True
            with self._turn:
                pending = self._pending.get(call_id)  # type: ignore[arg-type]
                if pending is not None:
                    pending.replies.append(_reply(header, body))
                    pending.final = not more
                    pending.done.set()
                    self._turn.notify_all()

    def _lost(self, conn: BlockingWebSocket, exc: Exception) -> None:
        """The connection broke: every call waiting on it fails; the next call reconnects."""
        with self._turn:
            if self._conn is conn:
                self._conn = None
            failed, self._pending = self._pending, {}
            for pending in failed.values():
                pending.error = _broken(self.url, exc)
                pending.done.set()
            self._turn.notify_all()
        conn.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class AsyncStream:
    """One WebSocket for an AsyncClient: a reader task hands each answer to its call's future."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = url
        self.url = stream_url(url)
        self._token = token
        self._timeout_s = timeout_s
        self._ssl = ssl_context
        self._ids = itertools.count(1)
        self._conn: AsyncConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[Reply]] = {}

    async def send(self, call: Call[Any]) -> Reply:
        for attempt in (1, 2):
            conn = await self._connection()
            call_id = next(self._ids)
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._pending[call_id] = future
            try:
                await conn.send(_frame(call_id, call))
            except ConnectionClosed as exc:
                self._pending.pop(call_id, None)
                self._lost(conn, exc)
                if attempt == 1:
                    continue
                raise ServerUnavailableError(f"the connection to {self.url} closed: {exc}") from exc
            try:
                return await asyncio.wait_for(future, self._timeout_s + call.hold_s)
            except TimeoutError:
                self._pending.pop(call_id, None)
                raise ServerUnavailableError(f"no answer from {self.url} in time") from None
        raise AssertionError("unreachable")

    async def _connection(self) -> AsyncConnection:
        async with self._opening:
            if self._conn is not None:
                return self._conn
            try:
                self._conn = await async_connect(
                    self.url,
                    additional_headers=_headers(self._token),
                    subprotocols=[frames.SUBPROTOCOL],  # type: ignore[list-item]
                    compression=None,
                    max_size=_MAX_FRAME,
                    open_timeout=self._timeout_s,
                    ping_interval=20,
                    ping_timeout=20,
                    ssl=self._ssl,
                )
            except (OSError, TimeoutError, InvalidStatus, InvalidURI) as exc:
                raise _refused(self.base_url, exc) from exc
            except Exception as exc:
                raise StreamUnavailable(f"{self.url}: {exc}") from exc
            self._reader = asyncio.ensure_future(self._read(self._conn))
            return self._conn

    async def _read(self, conn: AsyncConnection) -> None:
        try:
            async for data in conn:
                try:
                    header, body = frames.decode(data)
                except frames.FrameError:
                    continue
                future = self._pending.pop(header.get("id"), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(_reply(header, body))
        except ConnectionClosed as exc:
            self._lost(conn, exc)
        else:
            self._lost(conn, ConnectionError("closed by the server"))

    def _lost(self, conn: AsyncConnection, exc: Exception) -> None:
        if self._conn is conn:
            self._conn = None
        failed, self._pending = self._pending, {}
        for future in failed.values():
            if not future.done():
                future.set_exception(_broken(self.url, exc))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
