"""How `conveyor server` runs the app under uvicorn: HTTP/1.1 with deadlines, keep-alive, logs.

uvicorn bounds how long an idle keep-alive connection stays open, but not how long a client may
take to send a request: a client that sends its headers a byte a second ("slowloris"), or never
sends anything, holds a connection for ever, and enough of them exhaust the server's sockets.
`http_protocol` adds the missing bounds to uvicorn's httptools protocol:

- the request head (request line and headers) must arrive within `head_timeout_s` of its first
  byte, and a new connection must have sent one within `head_timeout_s` of opening;
- the head may be at most MAX_HEAD_BYTES long (431 beyond);
- the body must arrive within `body_timeout_s` of the head's end (the size limit is BodyLimit's).

A client too slow gets 408 and the connection is closed. Once a request is read, the server may
take as long as it needs to answer (long-polls hold a request up to 60 s).

Keep-alive: an idle connection stays open KEEP_ALIVE_S, and at least three heartbeat intervals,
so that the server never closes one just as a worker reuses it for its next heartbeat (with
both at 5 s, heartbeats failed now and then with "connection reset"). The SDK and workers keep
one persistent connection (a WebSocket, pinged every 20 s) and send a REST call again on a fresh
connection when a kept-alive one broke before the call went out (conveyor.client.rest).

uvicorn's own log records (access log included) go to the handlers the CLI configured, so that
they are written like every other record, escaped (conveyor.cli.logs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
"""A body at the default size limit (1 MiB) must come at 35 kB/s or faster."""
MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_S = 75
"""Like nginx's default; longer than the idle timeout of clients (50 s) and common proxies."""


def keep_alive_s(heartbeat_interval_s: float) -> int:
    """How long the server keeps an idle connection open: comfortably longer than the longest
    pause between a worker's calls on one connection (its heartbeat interval)."""
    return max(KEEP_ALIVE_S, math.ceil(3 * heartbeat_interval_s))


def uvicorn_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    log_level: str,
    heartbeat_interval_s: float,
    head_timeout_s: float = HEAD_TIMEOUT_S,
    body_timeout_s: float = BODY_TIMEOUT_S,
    timeout_graceful_shutdown: int | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    max_body_bytes: int = 1_048_576,
) -> uvicorn.Config:
    """uvicorn's settings for serving `app`, as `conveyor server` runs it. The persistent
    connection reads messages well over the body limit, so that it can answer 413 with the limit
    as REST does (conveyor.server.stream); only one over MAX_MESSAGE_BYTES closes it (1009)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_protocol(head_timeout_s=head_timeout_s, body_timeout_s=body_timeout_s),
        timeout_keep_alive=keep_alive_s(heartbeat_interval_s),
        log_level=log_level,
        log_config=None,  # the CLI's handlers, not uvicorn's own (see the module's docstring)
        lifespan="on",
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ws="websockets-sansio",
        ws_max_size=max(MAX_MESSAGE_BYTES, 4 * max_body_bytes),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,
    )


MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest message the persistent connection reads at all."""


def http_protocol(*, head_timeout_s: float, body_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with these deadlines (see the module's docstring)."""

    class Protocol(_DeadlineProtocol):
        pass

    Protocol.head_timeout_s = head_timeout_s
    Protocol.body_timeout_s = body_timeout_s
    return Protocol


class _DeadlineProtocol(HttpToolsProtocol):
    head_timeout_s = HEAD_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    # ---- uvicorn's and httptools' callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._set_deadline(self.head_timeout_s, "send a request")

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._deadline is None:  # a connection's first request keeps the deadline it had
            self._set_deadline(self.head_timeout_s, "send the request's headers")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_head(len(name) + len(value))

    # After a refusal the parser still calls back for the rest of the data it was given: none of
    # it may start the app.

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return
        super().on_headers_complete()
        self._set_deadline(self.body_timeout_s, "send the request's body")

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._clear_deadline()
        if not self.transport.is_closing():
            super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._clear_deadline()  # a WebSocket is no request once upgraded: no deadline applies
        super().handle_websocket_upgrade()

    # ---- the deadlines -----------------------------------------------------------------------

    def _set_deadline(self, timeout_s: float, what: str) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(timeout_s, self._too_slow, timeout_s, what)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, timeout_s: float, what: str) -> None:
        self._deadline = None
        log.info(
            "closed a connection whose client took over %s s to %s",
            timeout_s,
            what,
            extra={"client": self.client},
        )
        self._refuse(408, f"the client took over {timeout_s} s to {what}")

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"the request's headers exceed {MAX_HEAD_BYTES} bytes")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` if no answer is under way on this connection, and close it."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            body = json.dumps({"detail": message}).encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
            )
        self.transport.close()
