"""One id per HTTP request, in its `X-Request-ID` response header and in every log line written
while it is served (conveyor.logcontext), so that an operator can find a request's lines, and a
client or proxy can name the request it asks about.

A request that brings an `X-Request-ID` of its own (a proxy's, a client's trace) keeps it when it
is sane: 1 to MAX_LENGTH characters among letters, digits and `-_.:`. Anything else, which could
forge or flood log lines, is replaced by a new id. WebSocket connections (the persistent
connection) get one too, for their whole life.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.logcontext import bound

HEADER = b"x-request-id"
MAX_LENGTH = 128
_SANE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.:-]{0,%d}" % (MAX_LENGTH - 1))


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str:
    """The request's own id when it sent a sane one, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value.decode("ascii") if _SANE.fullmatch(value) else new_request_id()
    return new_request_id()


class RequestId:
    """ASGI middleware: bind the request's id to its log lines and send it back as a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)
