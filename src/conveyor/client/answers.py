"""From a `Call` to an HTTP request, and from the HTTP answer to a result or a Conveyor error.

Pure functions, no I/O: both sessions use them, so every status code means the same thing to the
sync client, the async client and the worker.

| answer                           | raised                                                   |
|----------------------------------|----------------------------------------------------------|
| 404                              | NotFoundError                                            |
| 409                              | the call's `conflict` (StaleTokenError for reports)      |
| 400, 413, 422                    | InvalidSpecError, `field` taken from `detail[0].loc`     |
| 503 with Retry-After             | StoreBusyError (`retry_after_s`)                         |
| 429, other 5xx, unreadable 2xx   | ServerUnavailableError (`retry_after_s` if given)        |
| no connection, timeout           | ServerUnavailableError naming the URL                    |
| anything else                    | ConveyorError with the server's message                  |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from conveyor.client.calls import Call
from conveyor.client.wire import WireError
from conveyor.errors import (
    ConveyorError,
    InvalidSpecError,
    NotFoundError,
    ServerUnavailableError,
    StoreBusyError,
)

T = TypeVar("T")


class HTTPAnswer(Protocol):
    """What is read of an answer: an httpx.Response, or the lean wire's Answer."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def is_success(self) -> bool: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def request_body(call: Call[Any]) -> bytes | None:
    # Defaults are left out: the server applies the same ones, and batches stay small.
    return None if call.body is None else call.body.model_dump_json(exclude_defaults=True).encode()


# FastAPI puts where a validation error was found first: the field path follows.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def server_url(url: str) -> str:
    """The server's base URL without a trailing slash; `host:port` means `http://host:port`."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def build_request(
    base_url: str, call: Call[T], headers: dict[str, str], timeout_s: float
) -> httpx.Request:
    # A long-poll may be held up to `hold_s` before its first byte: only reading waits longer.
    timeout = httpx.Timeout(timeout_s, read=timeout_s + call.hold_s)
    content = request_body(call)
    if content is not None:
        headers = {**headers, "Content-Type": "application/json"}
    return httpx.Request(
        call.method,
        # Appended, not joined: a server behind a path prefix (https://host/conveyor) keeps it.
        base_url + call.path,
        params=call.params,
        content=content,
        headers=headers,
        extensions={"timeout": timeout.as_dict()},
    )


def read_answer(call: Call[T], response: HTTPAnswer) -> T:
    """The call's result from a 2xx answer; otherwise raise the error the status code means."""
    if response.is_success:
        try:
            return call.parse(response.content)
        except (ValidationError, ValueError) as exc:
            raise ServerUnavailableError(
                f"{call.method} {call.path}: the server's answer could not be read ({exc}); "
                "is the server the same Conveyor version as this client?"
            ) from exc
    raise error_for(call, response)


def error_for(call: Call[T], response: HTTPAnswer) -> ConveyorError:
    status = response.status_code
    message, field = _detail(response)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return call.conflict(message)
    if status in (400, 413, 422):
        if status == 413:
            message = f"request too large: {message}"
        return InvalidSpecError(message, field=field)
    retry_after_s = _retry_after_s(response)
    if status == 503 and retry_after_s is not None:
        return StoreBusyError(message, retry_after_s=retry_after_s)
    if status == 429 or status >= 500:
        return ServerUnavailableError(
            f"the server could not serve {call.method} {call.path} now (HTTP {status}): {message}",
            retry_after_s=retry_after_s,
        )
    if status in (401, 403):
        return ConveyorError(
            f"the server refused the request (HTTP {status}): {message}; "
            "pass the right token (--token or CONVEYOR_TOKEN)"
        )
    return ConveyorError(f"{call.method} {call.path} failed (HTTP {status}): {message}")


def unreachable(base_url: str, exc: httpx.TransportError | WireError) -> ServerUnavailableError:
    """The error for a request that never got an answer."""
    timed_out = isinstance(exc, httpx.TimeoutException) or (
        isinstance(exc, WireError) and exc.timed_out
    )
    what = "did not answer in time" if timed_out else "is unreachable"
    reason = str(exc) or type(exc).__name__
    return ServerUnavailableError(
        f"the Conveyor server at {base_url} {what} ({reason}); check that `conveyor server` "
        "runs there, or point --server / CONVEYOR_URL at the right address"
    )


def _detail(response: HTTPAnswer) -> tuple[str, str | None]:
    """The server's message and, for a validation error, the dotted path of the field."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or f"HTTP {response.status_code}"), None
    if isinstance(body, dict) and "acks" in body and "detail" not in body:
        # A report batch refused as a whole: the acks say why, task by task.
        acks = [a for a in body["acks"] if isinstance(a, dict)]
        reasons = "; ".join(f"{a.get('task_id')}: {a.get('detail')}" for a in acks[:5])
        return f"every report was refused ({reasons})", None
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = [str(part) for part in first.get("loc", ())]
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        field = ".".join(loc) or None
        message = str(first.get("msg", "invalid request"))
        # The server may have put the field in the message too: say it once.
        prefix = f"field {field!r}: "
        return (message[len(prefix) :] if message.startswith(prefix) else message), field
    if isinstance(detail, str):
        return detail, None
    return json.dumps(detail), None


def _retry_after_s(response: HTTPAnswer) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    value = response.headers.get("retry-after")  # httpx's headers ignore case; Answer's are lower
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
