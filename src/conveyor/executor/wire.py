"""The messages between the pool and a child: one JSON document per message, nothing pickled.

A child first sends READY once it is set up; then the parent sends Requests and the child
answers each one with exactly one Reply.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal, TypedDict, cast

from conveyor.core.states import Outcome
from conveyor.core.types import JSON
from conveyor.errors import HandlerError
from conveyor.executor.models import Execution, ExecutionResult

READY = b'{"ready":true}'
"""The child's first message: it started, so a later death is not a start-up failure."""


class Request(TypedDict):
    handler: str
    args: list[JSON]
    kwargs: dict[str, JSON]


class Reply(TypedDict):
    """The handler's word; its output travels apart, through the capture pipes (capture.py)."""

    outcome: Literal["succeeded", "failed"]
    result: JSON
    error: str | None
    traceback: str | None


def encode(message: Request | Reply) -> bytes:
    """Serialize a message; raises ValueError or TypeError when it holds non-JSON values.

    NaN and infinities are refused: they are not JSON, and the store and the REST API could not
    carry them.
    """
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode()


def decode_request(data: bytes) -> Request:
    return cast(Request, json.loads(data))


def decode_reply(data: bytes) -> Reply:
    """Parse a Reply; ValueError if `data` is not one (a bug, treated like a crashed child)."""
    reply = json.loads(data)
    if not isinstance(reply, dict) or reply.get("outcome") not in ("succeeded", "failed"):
        raise ValueError(f"not a reply from an executor child: {data[:100]!r}")
    return cast(Reply, reply)


def encode_request(execution: Execution) -> bytes:
    """The Request for `execution`; HandlerError if its arguments are not JSON."""
    request: Request = {
        "handler": execution.handler,
        "args": execution.args,
        "kwargs": execution.kwargs,
    }
    try:
        return encode(request)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"the task's arguments are not JSON serializable: {exc}") from exc


def to_result(
    reply: Reply,
    execution: Execution,
    *,
    stdout_tail: str,
    stderr_tail: str,
    started_at: datetime,
    finished_at: datetime,
) -> ExecutionResult:
    return ExecutionResult(
        task_id=execution.task_id,
        token=execution.token,
        outcome=Outcome(reply["outcome"]),
        result=reply["result"],
        error=reply["error"],
        traceback=reply["traceback"],
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        started_at=started_at,
        finished_at=finished_at,
    )
