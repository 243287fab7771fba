"""The fast lane: the five calls every task makes, answered without FastAPI's request machinery.

Submit (`POST /tasks`, `POST /tasks/batch`), lease and report (`POST /workers/{id}/lease`,
`/report`) and result waits (`GET /tasks/{id}/result`) are most of a server's traffic. Through
FastAPI each paid for route matching over every route, dependency solving, validating the body
from a parsed dict, validating the returned model again and encoding it, and a hop to a thread
per engine call: several times what the engine spends. Here a request for one of them is matched
by method and path, its body validated straight from the bytes by the same pydantic models
(`model_validate_json`), writes go to the group commit (`GroupCommit`), reads of SQLite run on
the event loop (a point read by key, tens of microseconds, cheaper than any thread hop), and the
answer is encoded by the response model's serializer.

The FastAPI routes stay declared as they were: they are the documentation (/docs, /openapi.json),
the auth table's routes (this middleware sits inside `auth.Authorizer` and `BodyLimit`, so tokens,
roles and size limits apply unchanged), and they serve whatever this lane does not match (another
method, a trailing slash). The answers are the same as theirs, errors included: 422 naming the
field (`loc` starts with "body" or "query"), 404, 409, 503 with Retry-After, and a logged 500.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.api.schemas import (
    API_PREFIX,
    BatchIn,
    BatchOut,
    LeaseIn,
    LeaseOut,
    ReportBatchIn,
    ResultOut,
    TaskOut,
)
from conveyor.core.models import Assignment, Task
from conveyor.core.spec import TaskSpec
from conveyor.errors import (
    ConflictError,
    InvalidSpecError,
    NotFoundError,
    StoreError,
    StoreRefusedError,
)
from conveyor.server import errors
from conveyor.server.context import ServerContext
from conveyor.server.reports import acks_out, engine_reports

_TASK = re.compile(rf"^{API_PREFIX}/tasks/([^/]+)/result$")
_WORKER = re.compile(rf"^{API_PREFIX}/workers/([^/]+)/(lease|report)$")
_SUBMIT = f"{API_PREFIX}/tasks"
_BATCH = f"{API_PREFIX}/tasks/batch"
_JSON = [(b"content-type", b"application/json")]


class Answer(Exception):
    """An answer other than the route's usual one (an error), raised to leave the handler."""

    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


class ClientGone(Exception):
    """The client went away before its answer: there is nobody to send one to."""


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (the request's body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class FastLane:
    """ASGI middleware: serves the hot routes itself and hands everything else on."""

    def __init__(self, app: ASGIApp, context: ServerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler, param = _route(scope["method"], _route_path(scope))
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            status, body = await handler(self.context, scope, receive, param)
        except ClientGone:
            return
        except Answer as answer:
            await _send(send, answer.status, _json(answer.body), answer.headers)
            return
        except Exception as exc:
            response = await _error_response(scope, exc)
            await response(scope, receive, send)
            return
        await _send(send, status, body, None)


Handler = Callable[[ServerContext, Scope, Receive, str], Awaitable[tuple[int, bytes]]]


def _route(method: str, path: str) -> tuple[Handler | None, str]:
    if method == "POST":
        if path == _SUBMIT:
            return _submit, ""
        if path == _BATCH:
            return _submit_batch, ""
        if match := _WORKER.match(path):
            return (_lease if match[2] == "lease" else _report), match[1]
    elif method == "GET" and (match := _TASK.match(path)):
        return _result, match[1]
    return None, ""


# ---- the routes -------------------------------------------------------------------------------


async def _submit(ctx: ServerContext, scope: Scope, receive: Receive, _: str) -> tuple[int, bytes]:
    wait_s = _wait_param(scope)
    spec = _parse(TaskSpec, await _body(receive))
    before = ctx.engine.clock.now()
    ends_heard = ctx.waiters.ends_heard
    task = await ctx.write(ctx.engine.submit, spec)
    # A key submitted before returns the first task: 200, not 201.
    status = 200 if spec.key is not None and task.created_at < before else 201
    if wait_s > 0 and not task.state.is_terminal:
        task = await _wait_for_end(ctx, task.id, wait_s, known=(task, ends_heard))
    return status, _dump(TaskOut.of(task))


async def _submit_batch(
    ctx: ServerContext, scope: Scope, receive: Receive, _: str
) -> tuple[int, bytes]:
    batch = _parse(BatchIn, await _body(receive))
    tasks = await ctx.write(ctx.engine.submit_batch, batch.tasks)
    return 201, _dump(BatchOut(tasks=[TaskOut.of(t) for t in tasks]))


async def _lease(
    ctx: ServerContext, scope: Scope, receive: Receive, worker_id: str
) -> tuple[int, bytes]:
    body = _parse(LeaseIn, await _body(receive))
    engine = ctx.engine
    asked = True

    async def attempt() -> list[Assignment]:
        # The first attempt answers the worker asking now; a later one, woken by a task that
        # got ready, leases only to a worker heard from within a lease's time: one paused
        # (SIGSTOP, a stalled VM) that long has lost its leases and would sit on new ones too.
        nonlocal asked
        seen_within_s = None if asked else engine.settings.lease_s
        asked = False
        return await ctx.write(
            engine.lease,
            worker_id,
            body.max,
            queues=body.queues,
            free=body.free,
            seen_within_s=seen_within_s,
        )

    async def worker_queues() -> list[str]:
        return (await ctx.call(engine.worker, worker_id)).queues

    polling = asyncio.ensure_future(
        ctx.waiters.lease(
            attempt,
            wait_s=min(float(body.wait_s), ctx.settings.max_wait_s),
            queues=body.queues,
            find_queues=worker_queues,
        )
    )
    # A worker that dies mid-poll (SIGKILL, a crash) leaves its poll behind: it must not go on
    # to lease tasks that nobody will run, so the poll ends when its connection does.
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((polling, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (polling, gone):
            if not waiting.done():
                waiting.cancel()
    if not polling.done() or polling.cancelled():
        raise ClientGone()
    granted = polling.result()
    leased = LeaseOut.of(granted.tasks, waited_s=granted.waited_s, lease_s=engine.settings.lease_s)
    return 200, _dump(leased)


async def _report(
    ctx: ServerContext, scope: Scope, receive: Receive, worker_id: str
) -> tuple[int, bytes]:
    body = _parse(ReportBatchIn, await _body(receive))
    acks = await ctx.write(ctx.engine.report, worker_id, engine_reports(body))
    out = acks_out(acks)
    # 409 when no report was accepted: all were stale.
    return (200 if any(a.accepted for a in acks) else 409), _dump(out)


async def _result(
    ctx: ServerContext, scope: Scope, receive: Receive, task_id: str
) -> tuple[int, bytes]:
    task = await _wait_for_end(ctx, task_id, _wait_param(scope))
    out = ResultOut.of(task)
    return 200, _dump(out)


async def _wait_for_end(
    ctx: ServerContext, task_id: str, wait_s: float, *, known: tuple[Task, int] | None = None
) -> Task:
    """The task once it has ended, or as it is after `wait_s` (capped by the server); `known`
    as Waiters.result takes it."""
    engine = ctx.engine
    read_inline = bool(getattr(engine.store, "reads_on_loop", False))

    async def read() -> Task:
        if read_inline:
            return engine.get(task_id)
        return await ctx.call(engine.get, task_id)

    return await ctx.waiters.result(
        task_id, read, wait_s=min(wait_s, ctx.settings.max_wait_s), known=known
    )


# ---- parsing and answering ------------------------------------------------------------------


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Answer(400, {"detail": "the client went away"})
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc
    if any(e["type"] == "json_invalid" for e in error.errors(include_url=False)):
        # JSON that pydantic's parser refuses and Python's reads (a lone surrogate such as
        # "\ud800") is validated as the routes validate it, from Python's parse: the same
        # answer on both paths, naming the field, and a report's text gets cleaned, not refused.
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            pass  # not JSON to either parser: the first error stands
        else:
            try:
                return model.model_validate(data)
            except ValidationError as exc:
                error = exc
    raise Answer(422, {"detail": _errors(error, "body")})


def _errors(exc: ValidationError, where: str) -> list[dict[str, object]]:
    """FastAPI's 422 items, without the echoed input (see errors.invalid_request)."""
    items: list[dict[str, object]] = []
    for error in exc.errors(include_url=False, include_input=False):
        item: dict[str, object] = {
            "type": error["type"],
            "loc": errors._json_safe([where, *error["loc"]]),
            "msg": errors._json_safe(error["msg"]),
        }
        if "ctx" in error:
            item["ctx"] = errors._json_safe(error["ctx"])
        items.append(item)
    return items


def _wait_param(scope: Scope) -> float:
    query = scope.get("query_string", b"").decode("latin-1")
    # Blank values kept: `?wait=` is not a number (422), as FastAPI's route answers.
    raw = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "wait"]
    if not raw:
        return 0.0
    value = raw[-1]
    try:
        wait_s = float(value)
    except ValueError:
        wait_s = math.nan
        kind, msg = (
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number",
        )
    else:
        kind, msg = "finite_number", "Input should be a finite number"
    if not math.isfinite(wait_s):
        raise Answer(422, {"detail": [{"type": kind, "loc": ["query", "wait"], "msg": msg}]})
    if wait_s < 0:
        raise Answer(
            422,
            {
                "detail": [
                    {
                        "type": "greater_than_equal",
                        "loc": ["query", "wait"],
                        "msg": "Input should be greater than or equal to 0",
                        "ctx": {"ge": 0},
                    }
                ]
            },
        )
    return wait_s


def _dump(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str] | None) -> None:
    raw = [*_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _error_response(scope: Scope, exc: Exception) -> Response:
    """The answer the app's exception handlers give (errors.install), for the same error."""
    request = Request(scope)
    handler: Callable[[Request, Exception], Awaitable[Response]]
    if isinstance(exc, InvalidSpecError):
        handler = errors.invalid_spec
    elif isinstance(exc, NotFoundError):
        handler = errors.not_found
    elif isinstance(exc, ConflictError):
        handler = errors.conflict
    elif isinstance(exc, StoreRefusedError):
        handler = errors.store_refused
    elif isinstance(exc, StoreError):
        handler = errors.store_unavailable
    else:
        handler = errors.unexpected
    return await handler(request, exc)


def _route_path(scope: Scope) -> str:
    """The path as the app's routes see it: without the root path a proxy mounted it under."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path
