"""Sessions execute `Call`s: one sync, one async, and nothing else in them.

Building the request and reading the answer happen in `answers.py`; what a session adds is only
the sending, which is the one thing that differs between sync and async code. Calls travel on
the lean keep-alive client of `wire.py`, or over httpx when a transport is given (tests) or a
proxy is configured. A call safe to repeat is sent once more, on a fresh connection, when its
kept-alive connection broke before any answer came (`_send_again`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx

from conveyor.client.answers import (
    build_request,
    read_answer,
    request_body,
    server_url,
    unreachable,
)
from conveyor.client.calls import Call, Steps
from conveyor.client.wire import AsyncWire, SyncWire, Target, WireError

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _call_headers(headers: dict[str, str], call: Call[Any]) -> dict[str, str]:
    """The session's headers, with the call's own (a worker's secret) added."""
    return {**headers, **dict(call.headers)} if call.headers else headers


def _wire_headers(headers: dict[str, str], body: bytes | None) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"} if body is not None else headers


def _send_again(call: Call[Any], error: WireError | httpx.TransportError) -> bool:
    """Whether to send `call` once more, on a fresh connection, after `error`.

    Only when a kept-alive connection broke before any answer came (the server closed it as
    idle just as the call went out, most likely before reading it) and the call is safe to
    repeat: a read, or an idempotent write (`Call.idempotent`). httpx does not say whether its
    connection was a reused one; "disconnected without sending a response" is that case."""
    if not call.resendable:
        return False
    if isinstance(error, WireError):
        return error.stale
    return isinstance(error, httpx.RemoteProtocolError)


class SyncSession:
    """Sends calls on the lean wire, or with an `httpx.Client` given a transport. Safe to share
    between threads."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.url = server_url(url)
        self._headers = _headers(token)
        self._timeout_s = timeout_s
        target = Target.of(self.url) if transport is None else None
        self._wire = SyncWire(target) if target is not None else None
        self._http = httpx.Client(transport=transport) if self._wire is None else None

    def send(self, call: Call[T]) -> T:
        if self._wire is not None:
            body = request_body(call)
            headers = _wire_headers(_call_headers(self._headers, call), body)
            for last in (False, True):
                try:
                    answer = self._wire.request(
                        call.method,
                        call.path,
                        call.params,
                        headers,
                        body,
                        connect_timeout_s=self._timeout_s,
                        read_timeout_s=self._timeout_s + call.hold_s,
                    )
                except WireError as exc:
                    if last or not _send_again(call, exc):
                        raise unreachable(self.url, exc) from exc
                else:
                    return read_answer(call, answer)
        assert self._http is not None
        for last in (False, True):
            request = build_request(
                self.url, call, _call_headers(self._headers, call), self._timeout_s
            )
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if last or not _send_again(call, exc):
                    raise unreachable(self.url, exc) from exc
            else:
                return read_answer(call, response)
        raise AssertionError("not reached: the last attempt returns or raises")

    def run(self, steps: Steps[T]) -> T:
        """Send every call `steps` yields; return what it returns."""
        answer: Any = None
        try:
            while True:
                answer = self.send(steps.send(answer))
        except StopIteration as done:
            result: T = done.value
            return result

    def answers(self, steps: Steps[None]) -> Iterator[Any]:
        """Send every call `steps` yields, and yield each answer as it comes."""
        answer: Any = None
        while True:
            try:
                call = steps.send(answer)
            except StopIteration:
                return
            answer = self.send(call)
            yield answer

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        if self._http is not None:
            self._http.close()


class AsyncSession:
    """Sends calls on the lean wire, or with an `httpx.AsyncClient` given a transport."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.url = server_url(url)
        self._headers = _headers(token)
        self._timeout_s = timeout_s
        target = Target.of(self.url) if transport is None else None
        self._wire = AsyncWire(target) if target is not None else None
        self._http = httpx.AsyncClient(transport=transport) if self._wire is None else None

    async def send(self, call: Call[T]) -> T:
        if self._wire is not None:
            body = request_body(call)
            headers = _wire_headers(_call_headers(self._headers, call), body)
            for last in (False, True):
                try:
                    answer = await self._wire.request(
                        call.method,
                        call.path,
                        call.params,
                        headers,
                        body,
                        connect_timeout_s=self._timeout_s,
                        read_timeout_s=self._timeout_s + call.hold_s,
                    )
                except WireError as exc:
                    if last or not _send_again(call, exc):
                        raise unreachable(self.url, exc) from exc
                else:
                    return read_answer(call, answer)
        assert self._http is not None
        for last in (False, True):
            request = build_request(
                self.url, call, _call_headers(self._headers, call), self._timeout_s
            )
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if last or not _send_again(call, exc):
                    raise unreachable(self.url, exc) from exc
            else:
                return read_answer(call, response)
        raise AssertionError("not reached: the last attempt returns or raises")

    async def run(self, steps: Steps[T]) -> T:
        answer: Any = None
        try:
            while True:
                answer = await self.send(steps.send(answer))
        except StopIteration as done:
            result: T = done.value
            return result

    async def answers(self, steps: Steps[None]) -> AsyncIterator[Any]:
        answer: Any = None
        while True:
            try:
                call = steps.send(answer)
            except StopIteration:
                return
            answer = await self.send(call)
            yield answer

    async def close(self) -> None:
        if self._wire is not None:
            await self._wire.close()
        if self._http is not None:
            await self._http.aclose()
