"""The persistent connection: every operation over one WebSocket, many calls in flight at once.

A client (the SDK, a worker) opens one connection at STREAM_PATH on the API port, authenticated
once by its bearer token, and sends calls as frames (conveyor.api.frames): each names an
operation, its parameters and body, under an id of the client's choosing. Each call runs as a
task of its own, so a long poll (a worker's lease, a result wait) holds up nothing else, and its
answer goes back the moment it is ready, with the call's id. The calls are validated, checked
(access, a worker's secret) and answered as REST does them, by the same implementations
(conveyor.server.operations) and the same error table (conveyor.server.errors).

A connection keeps at most MAX_IN_FLIGHT calls running; past that it stops reading until one
ends, so that a client cannot make the server hold unbounded work. Closing the connection ends
its long polls (a worker that dies mid-poll must not lease tasks nobody will run).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from conveyor.api import frames
from conveyor.api.operations import OPERATIONS, Operation
from conveyor.server import errors
from conveyor.server.auth import (
    ANY,
    Refusal,
    Role,
    Tokens,
    bearer_token,
    identity_refusal,
    refusal,
)
from conveyor.server.bodylimit import too_large
from conveyor.server.context import ServerContext
from conveyor.server.operations import Answer, Caller, CallerGone, Handler

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
        self.role = role
        self.presented = presented
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
        call_id: Any = None
        try:
            header, body = frames.decode(data)
            call_id = header.get("id")
            status, answer, retry_after = await self._run(header, body)
        except frames.FrameError as exc:
            status, answer, retry_after = 400, _detail(str(exc)), None
        except CallerGone:
            return
        except Exception as exc:
            failed = errors.error_answer(exc, f"stream {data[:60]!r}")
            status, answer, retry_after = failed.status, _json(failed.body), failed.retry_after_s
        reply: dict[str, Any] = {"id": call_id, "status": status}
        if retry_after is not None:
            reply["retry_after"] = retry_after
        await self._send(frames.encode(reply, answer), binary)

    async def _run(self, header: dict[str, Any], body: bytes) -> tuple[int, bytes, float | None]:
        op = OPERATIONS.get(str(header.get("op")))
        if op is None:
            return 404, _detail(f"no operation {header.get('op')!r}"), None
        _, refused = refusal(op.access, self.ctx.settings.tokens, self.presented, op.name)
        if refused is not None:
            return refused.status, _detail(refused.detail), None
        limit = self.ctx.settings.max_body_bytes
        if len(body) > limit:
            return 413, _detail(too_large(limit)), None
        try:
            params = op.params.model_validate(header.get("params") or {})
            payload = _body(op, body)
        except ValidationError as exc:
            return (
                422,
                _json({"detail": _errors(exc, "params" if op.body is None else "body")}),
                None,
            )
        if op.acts_for_worker:
            secret = header.get("secret")
            refused = identity_refusal(
                self.role,
                getattr(params, "worker_id", ""),
                secret.encode() if isinstance(secret, str) else None,
                self.ctx.identities,
            )
            if refused is not None:
                return refused.status, _detail(refused.detail), None
        caller = Caller(gone=self._gone)
        handler = self.handlers[op.name]
        if op.body is None:
            answer = await handler(self.ctx, caller, params)
        else:
            answer = await handler(self.ctx, caller, params, payload)
        status = op.status
        if isinstance(answer, Answer):
            status, answer = answer.status, answer.body
        if answer is None:
            return status, b"", None
        return status, answer.__pydantic_serializer__.to_json(answer), None

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
    body = _detail(refused.detail)
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


def _body(op: Operation, body: bytes) -> BaseModel | None:
    """The body as its model, read as REST reads it: JSON that pydantic's parser refuses and
    Python's reads (a lone surrogate escape, "\\ud800") is validated from Python's parse, so
    that the field is named, and a report's text is cleaned rather than refused."""
    if op.body is None:
        return None
    try:
        return op.body.model_validate_json(body or b"{}")
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            raise
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise exc from None
        return op.body.model_validate(data)


def _errors(exc: ValidationError, where: str) -> list[dict[str, object]]:
    """Validation errors as REST gives them: `loc` starts with where the value was."""
    return [
        {
            "type": error["type"],
            "loc": errors._json_safe([where, *error["loc"]]),
            "msg": errors._json_safe(error["msg"]),
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


def _detail(text: str) -> bytes:
    return _json({"detail": text})


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
