"""The persistent connection: every operation over one WebSocket, many calls in flight at once.

A client (the SDK, a worker) opens one connection at STREAM_PATH on the API port, authenticated
once by its bearer token, and sends calls as frames (conveyor.api.frames): each names an
operation, its parameters and body, under an id of the client's choosing. Each call runs as a
task of its own, so a long poll (a worker's lease, a result wait) holds up nothing else, and its
answer goes back the moment it is ready, with the call's id. Each call is served by
conveyor.server.dispatch: validated, checked (access, a worker's secret) and answered as REST
does them, by the same implementations and the same error table. A call may answer more than
once (a following lease pushes each task as it gets ready): every answer but its last says
`"more": true`. A frame `{"id": N, "stop": true}` asks call N to end early: it then grants
nothing more and sends its last answer.

A connection keeps at most MAX_IN_FLIGHT calls running; past that it stops reading until one
ends, so that a client cannot make the server hold unbounded work. Closing the connection ends
its long polls (a worker that dies mid-poll must not lease tasks nobody will run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from conveyor.api import frames
from conveyor.server.auth import ANY, Refusal, Role, Tokens, bearer_token, refusal
from conveyor.server.context import ServerContext
from conveyor.server.dispatch import Credentials, Served, detail, dispatch
from conveyor.server.operations import Caller, CallerGone, Handler

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1024
"""Calls one connection may have running at once."""


class StreamEndpoint:
    """The ASGI app of STREAM_PATH (a WebSocket route)."""

    def __init__(self, ctx: ServerContext, handlers: Mapping[str, Handler]) -> None:
        self.ctx = ctx
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        tokens: Tokens = self.ctx.settings.tokens
        presented = bearer_token(scope)
        role = tokens.role_of(presented) if tokens and presented is not None else None
        if tokens and role is None:
            # Refused before the upgrade, as a REST call would be (401).
            await _deny(
                scope, send, refusal(ANY, tokens, presented, "the persistent connection")[1]
            )
            return
        subprotocols = scope.get("subprotocols") or []
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": frames.SUBPROTOCOL if frames.SUBPROTOCOL in subprotocols else None,
            }
        )
        await _Connection(self.ctx, self.handlers, role, presented).serve(receive, send)


class _Connection:
    def __init__(
        self,
        ctx: ServerContext,
        handlers: Mapping[str, Handler],
        role: Role | None,
        presented: bytes | None,
    ) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.credentials = Credentials(presented, role)
        self.stops: dict[Any, asyncio.Event] = {}
        """The calls running, by id: set one to ask that call to end early."""
        self.closed = asyncio.Event()
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.running: set[asyncio.Task[None]] = set()
        self.sending = asyncio.Lock()
        self.send: Send | None = None

    async def serve(self, receive: Receive, send: Send) -> None:
        self.send = send
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                data = message.get("bytes") or (message.get("text") or "").encode()
                await self.slots.acquire()
                task = asyncio.ensure_future(self._call(data, binary="bytes" in message))
                self.running.add(task)
                task.add_done_callback(self._done)
        finally:
            self.closed.set()
            for task in list(self.running):
                task.cancel()

    async def _gone(self) -> None:
        await self.closed.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self.slots.release()

    async def _call(self, data: bytes, *, binary: bool) -> None:
        try:
            header, body = frames.decode(data)
        except frames.FrameError as exc:
            await self._answer(None, Served(400, detail(str(exc))), binary)
            return
        call_id = header.get("id")
        if header.get("stop") is True:  # the client asks a following call to end
            stop = self.stops.get(call_id)
            if stop is not None:
                stop.set()
            return

        async def push(answer: BaseModel) -> None:
            ahead = {"id": call_id, "status": 200, "more": True}
            await self._send(
                frames.encode(ahead, answer.__pydantic_serializer__.to_json(answer)), binary
            )

        self.stops[call_id] = stopped = asyncio.Event()
        try:
            served = await dispatch(
                self.ctx,
                self.handlers,
                header.get("op"),
                header.get("params"),
                body,
                secret=header.get("secret"),
                credentials=self.credentials,
                caller=Caller(gone=self._gone, push=push, stopped=stopped),
                where=f"stream {data[:60]!r}",
            )
        except CallerGone:
            return
        finally:
            self.stops.pop(call_id, None)
        await self._answer(call_id, served, binary)

    async def _answer(self, call_id: Any, served: Served, binary: bool) -> None:
        reply: dict[str, Any] = {"id": call_id, "status": served.status}
        if served.retry_after_s is not None:
            reply["retry_after"] = served.retry_after_s
        await self._send(frames.encode(reply, served.content), binary)

    async def _send(self, frame: bytes, binary: bool) -> None:
        if self.closed.is_set() or self.send is None:
            return
        message: dict[str, Any] = (
            {"type": "websocket.send", "bytes": frame}
            if binary
            else {"type": "websocket.send", "text": frame.decode()}
        )
        async with self.sending:
            try:
                await self.send(message)
            except (OSError, RuntimeError):  # the connection went away meanwhile
                self.closed.set()


async def _deny(scope: Scope, send: Send, refused: Refusal | None) -> None:
    """Refuse the handshake as REST refuses a request: 401 with WWW-Authenticate and the same
    detail, where the server can answer a handshake with a response of its own (ASGI's denial
    response); a bare 403 elsewhere."""
    if refused is None or "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = detail(refused.detail)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", refused.challenge.encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
