"""Serving one call that names its operation, whichever transport carried it.

The persistent connection (`stream.py`) and the in-process server (`local.py`) both hand a call
here as the operation's name, its parameters (JSON values) and its body (JSON bytes, as REST
carries it), and send back what comes out: a status, a body and, with a 503, Retry-After. The
checks are REST's (conveyor.server.auth: the token's role, a worker's own secret), the
validation is the models' (a 422 names the field as REST does), the answer comes from the
operation's one implementation (conveyor.server.operations), and an error becomes what the one
error table (conveyor.server.errors) says. So an operation behaves the same whichever way it
arrives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from conveyor.api.operations import OPERATIONS, Operation
from conveyor.server import errors
from conveyor.server.auth import Role, identity_refusal, refusal
from conveyor.server.bodylimit import too_large
from conveyor.server.context import ServerContext
from conveyor.server.operations import Answer, Caller, CallerGone, Handler


@dataclass(frozen=True, slots=True)
class Served:
    """A call's answer: what every transport sends back, in its own framing."""

    status: int
    content: bytes
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who sends the calls of one connection: the bearer token it presented (None: none) and
    the role that token has (None: no token is configured, so every caller may do anything)."""

    presented: bytes | None = None
    role: Role | None = None


async def dispatch(
    ctx: ServerContext,
    handlers: Mapping[str, Handler],
    op_name: object,
    params: object,
    body: bytes,
    *,
    secret: object,
    credentials: Credentials,
    caller: Caller,
    where: str,
) -> Served:
    """Serve one call: `op_name`, `params` and `secret` as the client sent them (any JSON value:
    they are checked here), `body` the JSON bytes of the body. `where` names the call in the log
    of an unexpected error. Raises CallerGone when the caller went away before its answer."""
    try:
        return await _serve(ctx, handlers, op_name, params, body, secret, credentials, caller)
    except CallerGone:
        raise
    except Exception as exc:
        failed = errors.error_answer(exc, where)
        return Served(failed.status, _json(failed.body), failed.retry_after_s)


async def _serve(
    ctx: ServerContext,
    handlers: Mapping[str, Handler],
    op_name: object,
    raw_params: object,
    body: bytes,
    secret: object,
    credentials: Credentials,
    caller: Caller,
) -> Served:
    op = OPERATIONS.get(str(op_name))
    if op is None:
        return Served(404, detail(f"no operation {op_name!r}"))
    _, refused = refusal(op.access, ctx.settings.tokens, credentials.presented, op.name)
    if refused is not None:
        return Served(refused.status, detail(refused.detail))
    limit = ctx.settings.max_body_bytes
    if len(body) > limit:
        return Served(413, detail(too_large(limit)))
    try:
        params = op.params.model_validate(raw_params or {})
        payload = _body(op, body)
    except ValidationError as exc:
        where = "params" if op.body is None else "body"
        return Served(422, _json({"detail": _errors(exc, where)}))
    if op.acts_for_worker:
        refused = identity_refusal(
            credentials.role,
            getattr(params, "worker_id", ""),
            secret.encode() if isinstance(secret, str) else None,
            ctx.identities,
        )
        if refused is not None:
            return Served(refused.status, detail(refused.detail))
    handler = handlers[op.name]
    if op.body is None:
        answer = await handler(ctx, caller, params)
    else:
        answer = await handler(ctx, caller, params, payload)
    status = op.status
    if isinstance(answer, Answer):
        status, answer = answer.status, answer.body
    if answer is None:
        return Served(status, b"")
    return Served(status, answer.__pydantic_serializer__.to_json(answer))


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


def detail(text: str) -> bytes:
    """An error body as REST writes it: `{"detail": text}`."""
    return _json({"detail": text})


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
