"""From an answer to a result or a Conveyor error, whichever transport carried the call.

Pure functions, no I/O: every session uses them, so every status code means the same thing to
the sync client, the async client and the worker, over REST and over the persistent connection.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from pydantic import ValidationError

from conveyor.client.calls import Call
from conveyor.errors import (
    ConveyorError,
    InvalidSpecError,
    NotFoundError,
    ServerUnavailableError,
    StoreBusyError,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer as every transport gives it: its status, its body, and Retry-After (seconds)."""

    status: int
    content: bytes
    retry_after_s: float | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class Following(Iterator[T]):
    """The answers of a call that may answer more than once (a following lease), as they come.
    `stop()` asks the server to end the call early: the answers already on their way still
    come, then its last one, so nothing it granted is lost."""

    def __init__(self, answers: Iterator[T], stop: Callable[[], None] = lambda: None) -> None:
        self._answers = answers
        self._stop = stop

    def __next__(self) -> T:
        return next(self._answers)

    def stop(self) -> None:
        self._stop()


# FastAPI puts where a validation error was found first: the field path follows.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def server_url(url: str) -> str:
    """The server's base URL without a trailing slash; `host:port` means `http://host:port`."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def read_answer(call: Call[T], response: Reply) -> T:
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


def error_for(call: Call[T], response: Reply) -> ConveyorError:
    status = response.status
    message, field = _detail(response)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return call.conflict(message)
    if status in (400, 413, 422):
        if status == 413:
            message = f"request too large: {message}"
        return InvalidSpecError(message, field=field)
    retry_after_s = response.retry_after_s
    if status == 503 and retry_after_s is not None:
        return StoreBusyError(message, retry_after_s=retry_after_s)
    if status == 429 or status >= 500:
        return ServerUnavailableError(
            f"the server could not serve {call.method} {call.path} now (HTTP {status}): {message}",
            retry_after_s=retry_after_s,
        )
    if status in (401, 403):
        return refused(response)
    return ConveyorError(f"{call.method} {call.path} failed (HTTP {status}): {message}")


def refused(response: Reply) -> ConveyorError:
    """A 401 or 403: the token is missing, unknown, or not allowed this."""
    message, _ = _detail(response)
    return ConveyorError(
        f"the server refused the request (HTTP {response.status}): {message}; "
        "pass the right token (--token or CONVEYOR_TOKEN)"
    )


def unreachable(base_url: str, exc: BaseException) -> ServerUnavailableError:
    """The error for a request that never got an answer."""
    timed_out = isinstance(exc, httpx.TimeoutException | TimeoutError)
    what = "did not answer in time" if timed_out else "is unreachable"
    reason = str(exc) or type(exc).__name__
    return ServerUnavailableError(
        f"the Conveyor server at {base_url} {what} ({reason}); check that `conveyor server` "
        "runs there, or point --server / CONVEYOR_URL at the right address"
    )


def _detail(response: Reply) -> tuple[str, str | None]:
    """The server's message and, for a validation error, the dotted path of the field."""
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.content.decode(errors="replace").strip()
        return (text[:500] or f"HTTP {response.status}"), None
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


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header as seconds: either a number of seconds or an HTTP date."""
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
