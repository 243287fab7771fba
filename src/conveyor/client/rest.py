"""REST, client side: a call as an HTTP request over httpx, its answer as a Reply.

For curl-like setups, a server or proxy without the persistent connection, and tests (an httpx
transport: `httpx.MockTransport`, `httpx.ASGITransport`). A call safe to repeat is sent once
more, on a fresh connection, when its kept-alive connection broke before any answer came: the
server most likely closed it as idle just as the call went out (`_send_again`).
"""

from __future__ import annotations

from typing import Any

import httpx

from conveyor.api.schemas import WORKER_SECRET_HEADER
from conveyor.client.answers import Reply, retry_after_s, unreachable
from conveyor.client.calls import Call


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def build_request(
    base_url: str, call: Call[Any], headers: dict[str, str], timeout_s: float
) -> httpx.Request:
    # A long-poll may be held up to `hold_s` before its first byte: only reading waits longer.
    timeout = httpx.Timeout(timeout_s, read=timeout_s + call.hold_s)
    content = call.body_bytes()
    if content is not None or call.secret:
        headers = dict(headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        if call.secret:
            headers[WORKER_SECRET_HEADER] = call.secret
    return httpx.Request(
        call.method,
        # Appended, not joined: a server behind a path prefix (https://host/conveyor) keeps it.
        base_url + call.path,
        params=call.query,
        content=content,
        headers=headers,
        extensions={"timeout": timeout.as_dict()},
    )


def _reply(response: httpx.Response) -> Reply:
    return Reply(
        response.status_code, response.content, retry_after_s(response.headers.get("retry-after"))
    )


def _send_again(call: Call[Any], error: httpx.TransportError) -> bool:
    """Whether to send `call` once more, on a fresh connection, after `error`: only when a
    kept-alive connection broke before any answer came ("disconnected without sending a
    response") and the call is safe to repeat (`Call.resendable`)."""
    return call.resendable and isinstance(error, httpx.RemoteProtocolError)


class SyncRest:
    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self._headers = _headers(token)
        self._timeout_s = timeout_s
        self._http = httpx.Client(transport=transport)

    def send(self, call: Call[Any]) -> Reply:
        for last in (False, True):
            request = build_request(self.url, call, self._headers, self._timeout_s)
            try:
                return _reply(self._http.send(request))
            except httpx.TransportError as exc:
                if last or not _send_again(call, exc):
                    raise unreachable(self.url, exc) from exc
        raise AssertionError("not reached: the last attempt returns or raises")

    def close(self) -> None:
        self._http.close()


class AsyncRest:
    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._headers = _headers(token)
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(transport=transport)

    async def send(self, call: Call[Any]) -> Reply:
        for last in (False, True):
            request = build_request(self.url, call, self._headers, self._timeout_s)
            try:
                return _reply(await self._http.send(request))
            except httpx.TransportError as exc:
                if last or not _send_again(call, exc):
                    raise unreachable(self.url, exc) from exc
        raise AssertionError("not reached: the last attempt returns or raises")

    async def close(self) -> None:
        await self._http.aclose()
