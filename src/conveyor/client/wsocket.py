"""A client WebSocket with no thread of its own: the thread that waits for a message reads it.

websockets' blocking client reads its socket in a background thread and hands each message to
the thread that called recv(): every answer crossed two threads (and the GIL) before its caller
saw it. `SyncStream` already has a waiting thread read the connection for everyone, so here that
thread reads the socket itself, through websockets' sans-I/O protocol (framing, masking, pings,
the closing handshake). Sends come from any thread, under a lock that also guards the protocol.

While no thread waits, nobody reads: a ping from the server goes unanswered and the server may
close an idle connection. `poll()`, called before a send while nobody reads, takes in what
arrived meanwhile, so that a connection the server closed is known closed and the call goes on
a new one instead of being lost on the old.

The connection is direct. A server reached through a forward proxy (HTTPS_PROXY and the like)
is refused here as having no persistent connection, and the session falls back to REST, which
httpx sends through the proxy.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence

from websockets import ConnectionClosed, ConnectionClosedError
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

_READ = 256 * 1024
"""Bytes read from the socket at a time."""


class ProxyInTheWay(Exception):
    """The environment sends this URL through a forward proxy, which this connection does not use."""


class BlockingWebSocket:
    """One client WebSocket: `send` from any thread, `recv` from one thread at a time."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self._lock = threading.Lock()  # the protocol's state, and writes to the socket
        self._messages: collections.deque[bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._closed: ConnectionClosed | None = None

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        headers: Mapping[str, str],
        subprotocols: Sequence[str],
        max_size: int,
        open_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> BlockingWebSocket:
        """Open the connection and complete the handshake. A refused handshake raises what
        websockets raises for it (InvalidStatus with the response, InvalidHandshake)."""
        uri = parse_uri(url)
        if _proxied(url, uri.host):
            raise ProxyInTheWay(f"{url} is to be reached through a proxy")
        sock = socket.create_connection((uri.host, uri.port), timeout=open_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                context = ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=uri.host)
            protocol = ClientProtocol(
                uri, subprotocols=[Subprotocol(s) for s in subprotocols], max_size=max_size
            )
            request = protocol.connect()
            for name, value in headers.items():
                request.headers[name] = value
            protocol.send_request(request)
            sock.sendall(b"".join(protocol.data_to_send()))
            connection = cls(sock, protocol)
            connection._handshake(time.monotonic() + open_timeout)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)  # reads wait in select(), with the caller's timeout
        return connection

    def _handshake(self, deadline: float) -> None:
        while True:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = self._sock.recv(_READ)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
            if any(isinstance(event, Response) for event in events):
                break
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
        if self._protocol.handshake_exc is not None:
            raise self._protocol.handshake_exc
        self._take(events)

    # ---- sending --------------------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        """Send one binary message; raises ConnectionClosed if the connection is known closed."""
        with self._lock:
            if self._closed is not None:
                raise self._closed
            if self._protocol.state is not State.OPEN:  # closing: the server said goodbye
                self._closed = self._closed_error()
                raise self._closed
            self._protocol.send_binary(message)
            self._flush()

    def _flush(self) -> None:
        """Write what the protocol has to say (messages, pongs, a close); under the lock."""
        data = b"".join(self._protocol.data_to_send())
        if data:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self._protocol.fail(1006, f"send failed: {exc}")
                self._closed = self._closed_error()
                raise self._closed from exc

    # ---- receiving (one thread at a time) -------------------------------------------------------

    def recv(self, timeout: float) -> bytes:
        """The next message; TimeoutError if none comes within `timeout` seconds, and
        ConnectionClosed once the connection is closed and every message taken."""
        deadline = time.monotonic() + timeout
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            if not self._readable(deadline - time.monotonic()):
                raise TimeoutError("no message in time")
            self._read()
        return self._messages.popleft()

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting (see the module's docstring)."""
        while self._closed is None and self._readable(0.0):
            self._read()

    def _readable(self, timeout: float) -> bool:
        if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return True  # decrypted bytes wait in the TLS layer, where select() cannot see them
        try:
            readable, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        except (OSError, ValueError):  # closed meanwhile
            return True  # the read says how
        return bool(readable)

    def _read(self) -> None:
        try:
            data = self._sock.recv(_READ)
        except ssl.SSLWantReadError:
            return  # part of a TLS record: the rest is on its way
        except OSError:
            data = b""
        with self._lock:
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
            # Pongs, and the answer to a close. A failed write marks the connection closed;
            # the messages already received are still delivered.
            with contextlib.suppress(ConnectionClosed):
                self._flush()
            self._take(events)
            if not data or self._protocol.state is not State.OPEN:
                # A close received (or sent) ends the messages: nothing more can come.
                self._closed = self._closed_error()

    def _take(self, events: Sequence[object]) -> None:
        for event in events:
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._fragments.append(bytes(event.data))
                if event.fin:
                    self._messages.append(b"".join(self._fragments))
                    self._fragments.clear()

    def _closed_error(self) -> ConnectionClosed:
        if self._protocol.state is State.CLOSED:
            return self._protocol.close_exc
        # Closed under the protocol's feet (the socket broke): no closing handshake completed.
        protocol = self._protocol
        return ConnectionClosedError(
            protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        )

    # ---- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Say goodbye (without waiting for the answer) and close the socket. Idempotent."""
        with self._lock:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close()
                with contextlib.suppress(ConnectionClosed):
                    self._flush()
            if self._closed is None:
                self._closed = self._closed_error()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _proxied(url: str, host: str) -> bool:
    """Whether the environment's proxy settings send `url` through a proxy."""
    scheme = "https" if url.startswith("wss") else "http"
    proxies = urllib.request.getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)
