"""A lean HTTP/1.1 keep-alive client for the SDK and the worker: the default way calls travel.

httpx spends several hundred microseconds of CPU on every request (building and routing it
through its client, auth and redirect layers, then h11 in pure Python); a worker or a client that
submits one task per call spends more time there than the server spends storing the task. The
REST API needs none of that machinery: JSON bodies with a Content-Length, on one connection that
stays open. Here a request is written with one send and its answer parsed by the few lines below:
a sync call (a socket per thread) and an async call (asyncio streams, a small pool of
connections) each cost a twentieth of httpx's or less.

Sessions use this unless given an httpx transport (tests swap in MockTransport or ASGITransport),
or unless the environment names a proxy for the server, which httpx knows how to use.

Keep-alive connections close at either end. A connection idle for MAX_IDLE_S is not used again
(the server keeps idle connections longer, so it never closes one this client is about to use);
a reused connection that breaks before any byte of the answer came raises a WireError with
`stale` set, and the session sends the call again on a fresh connection if it is safe to repeat.
A server may answer before it has read the whole request (413 for a body over its limit) and
close: that answer is read, not mistaken for a lost connection.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

MAX_IDLE_CONNECTIONS = 32
"""Async connections kept open between calls; more may be open while calls are in flight."""
MAX_IDLE_S = 50.0
"""A connection idle this long is closed instead of reused: well within the keep-alive of a
Conveyor server (75 s) and of common proxies (60 s), so the other end never closes a connection
just as a call goes out on it."""
EARLY_ANSWER_WAIT_S = 1.0
"""How long to look for an answer the server sent before it stopped reading the request."""


class WireError(Exception):
    """The call got no answer: connection refused or lost, or the server too slow."""

    def __init__(self, message: str, *, timed_out: bool = False, stale: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.stale = stale
        """A kept-alive connection, reused, broke before any byte of an answer: most likely the
        server closed it as idle, before it read the request."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, with the attributes of httpx.Response that `answers.py` reads."""

    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-case names."""
    reason_phrase: str = ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True, slots=True)
class Target:
    """Where calls go: the parts of the server's base URL."""

    scheme: str
    host: str
    port: int
    prefix: str
    """The base URL's path (a server behind a path prefix), without a trailing slash."""

    @classmethod
    def of(cls, base_url: str) -> Target | None:
        """None when this client cannot take the URL: not http(s), or behind a proxy."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        if parts.username or parts.password or parts.query or parts.fragment:
            return None
        proxies = getproxies()
        if (proxies.get(parts.scheme) or proxies.get("all")) and not proxy_bypass(parts.hostname):
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def request_target(target: Target, path: str, params: tuple[tuple[str, str], ...]) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{target.prefix}{path}{query}"


# ---- sync: a socket per thread ---------------------------------------------------------------


MAX_HEAD_BYTES = 65_536
"""An answer's status line and headers: more is not a Conveyor server talking."""


class _Connection:
    """A blocking keep-alive socket with the reads an HTTP answer needs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.answers = 0
        """Answers read in full on this connection: more than none means it is a reused one."""
        self.received = 0
        """Bytes received so far."""
        self.idle_since = time.monotonic()

    def readuntil(self, separator: bytes) -> bytes:
        while (end := self._buffer.find(separator)) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ValueError("the answer's head is too long")
            self._fill()
        end += len(separator)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readexactly(self, count: int) -> bytes:
        if len(self._buffer) < count:
            parts = [self._buffer]
            have = len(self._buffer)
            while have < count:
                chunk = self.sock.recv(max(count - have, 65_536))
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-answer")
                self.received += len(chunk)
                parts.append(chunk)
                have += len(chunk)
            self._buffer = b"".join(parts)
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_to_end(self) -> bytes:
        parts = [self._buffer]
        while chunk := self.sock.recv(65_536):
            self.received += len(chunk)
            parts.append(chunk)
        self._buffer = b""
        return b"".join(parts)

    def _fill(self) -> None:
        chunk = self.sock.recv(65_536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.received += len(chunk)
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


class SyncWire:
    """Thread-safe: each thread that calls gets its own keep-alive connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._local = threading.local()
        self._all: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        path: str,
        params: tuple[tuple[str, str], ...],
        headers: dict[str, str],
        body: bytes | None,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> Answer:
        head = _head(method, request_target(self.target, path, params), self.target, headers, body)
        conn = None
        received = 0
        try:
            conn = self._connection(connect_timeout_s)
            received = conn.received
            conn.sock.settimeout(read_timeout_s)
            try:
                conn.sock.sendall(head + body if body else head)
            except OSError:
                early = _early_answer(conn, method)
                if early is None:
                    raise
                self._drop(conn)
                return early
            answer = _read_answer_sync(conn, method)
        except (OSError, ValueError) as exc:
            if conn is not None:
                self._drop(conn)
            timed_out = isinstance(exc, TimeoutError | socket.timeout)
            stale = conn is not None and conn.answers > 0 and conn.received == received
            raise WireError(
                str(exc) or type(exc).__name__, timed_out=timed_out, stale=stale and not timed_out
            ) from exc
        answer_head, content = answer
        conn.answers += 1
        conn.idle_since = time.monotonic()
        if not answer_head.keep:
            self._drop(conn)
        return answer_head.answer(content)

    def _connection(self, connect_timeout_s: float) -> _Connection:
        if self._closed:
            raise WireError("the client is closed")
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and (
            _peer_closed(conn.sock) or time.monotonic() - conn.idle_since > MAX_IDLE_S
        ):
            self._drop(conn)  # the server let it go, or soon could: open a new one
            conn = None
        if conn is None:
            t = self.target
            sock = socket.create_connection((t.host, t.port), timeout=connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if t.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=t.host)
            conn = self._local.conn = _Connection(sock)
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _read_answer_sync(conn: _Connection, method: str) -> tuple[_AnswerHead, bytes]:
    answer_head = _parse_head(conn.readuntil(b"\r\n\r\n"), method)
    if answer_head.chunked:
        content = _read_chunked_sync(conn)
    elif answer_head.length is None:
        content = conn.read_to_end()
    else:
        content = conn.readexactly(answer_head.length)
    return answer_head, content


def _early_answer(conn: _Connection, method: str) -> Answer | None:
    """The answer a server sent before it stopped reading the request and closed (413 for a
    body over its limit: the rest of the body then met a closed socket), if it came."""
    try:
        conn.sock.settimeout(EARLY_ANSWER_WAIT_S)
        answer_head, content = _read_answer_sync(conn, method)
    except (OSError, ValueError):
        return None
    return answer_head.answer(content)


def _read_chunked_sync(conn: _Connection) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(conn.readuntil(b"\r\n").split(b";", 1)[0].strip(), 16)
        if size == 0:
            while conn.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(conn.readexactly(size))
        conn.readexactly(2)


def _peer_closed(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or is broken)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# ---- async: asyncio streams, a pool of connections ------------------------------------------


@dataclass(slots=True)
class _Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    answers: int = 0
    """Answers read in full on this connection: more than none means it is a reused one."""
    idle_since: float = field(default_factory=time.monotonic)


class AsyncWire:
    """For one event loop at a time; concurrent calls each take a connection of the pool."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._idle: list[_Stream] = []
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        params: tuple[tuple[str, str], ...],
        headers: dict[str, str],
        body: bytes | None,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> Answer:
        if self._closed:
            raise WireError("the client is closed")
        head = _head(method, request_target(self.target, path, params), self.target, headers, body)
        stream = None
        heard = False
        try:
            stream = await self._stream(connect_timeout_s)
            stream.writer.write(head + body if body else head)
            async with asyncio.timeout(read_timeout_s):
                try:
                    head_bytes = await stream.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    heard = bool(exc.partial)
                    raise
                except asyncio.LimitOverrunError:
                    heard = True
                    raise
                heard = True
                answer, keep = await _read_answer(stream.reader, head_bytes, method)
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            if stream is not None:
                stream.writer.close()
            raise WireError("timed out", timed_out=True) from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if stream is not None:
                stream.writer.close()
            stale = stream is not None and stream.answers > 0 and not heard
            raise WireError(str(exc) or type(exc).__name__, stale=stale) from exc
        except BaseException:  # cancelled mid-call: the connection's state is unknown
            if stream is not None:
                stream.writer.close()
            raise
        if keep and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
            stream.answers += 1
            stream.idle_since = time.monotonic()
            self._idle.append(stream)
        else:
            stream.writer.close()
        return answer

    async def _stream(self, connect_timeout_s: float) -> _Stream:
        while self._idle:
            stream = self._idle.pop()
            fresh = time.monotonic() - stream.idle_since <= MAX_IDLE_S
            if fresh and not stream.reader.at_eof() and not stream.writer.is_closing():
                return stream
            stream.writer.close()
        t = self.target
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                t.host, t.port, ssl=ssl.create_default_context() if t.scheme == "https" else None
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Stream(reader, writer)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for stream in idle:
            stream.writer.close()


def _head(
    method: str, target: str, where: Target, headers: dict[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {where.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class _AnswerHead:
    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case names."""
    chunked: bool
    length: int | None
    """The body's length when known before reading it; None: chunked, or up to the end."""
    keep: bool
    """Whether the connection may carry another request once the body is read."""

    def answer(self, content: bytes) -> Answer:
        return Answer(self.status, content, self.headers, self.reason)


def _parse_head(head: bytes, method: str) -> _AnswerHead:
    """The status line and headers (up to the blank line), and how the body is delimited."""
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(code)
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return _AnswerHead(status, reason, headers, False, 0, keep)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _AnswerHead(status, reason, headers, True, None, keep)
    if "content-length" in headers:
        return _AnswerHead(status, reason, headers, False, int(headers["content-length"]), keep)
    return _AnswerHead(status, reason, headers, False, None, False)  # up to the end


async def _read_answer(
    reader: asyncio.StreamReader, head_bytes: bytes, method: str
) -> tuple[Answer, bool]:
    """The answer whose head was read; and whether the connection may carry another request."""
    head = _parse_head(head_bytes, method)
    if head.chunked:
        content = await _read_chunked(reader)
    elif head.length is None:
        content = await reader.read()
    else:
        content = await reader.readexactly(head.length)
    return head.answer(content), head.keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
