"""Sessions execute `Call`s: one sync, one async, and nothing else in them.

A session sends each call on a transport and reads the answer (`answers.read_answer`), so a
status means the same thing whichever carried it:

- the persistent connection (`stream.py`), by default: one WebSocket carries every call, many
  in flight at once, without a request's set-up each;
- REST (`rest.py`): when the server (or a proxy in front of it) refuses the WebSocket handshake,
  when asked for with `connection="rest"`, and whenever an httpx transport is given (tests);
- any `SyncTransport` given with `through=`: the in-process server of embedded mode
  (conveyor.server.local.LocalServer), which calls the server's operations with no network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Protocol, TypeVar

import httpx

from conveyor.client.answers import Following, Reply, read_answer, server_url
from conveyor.client.calls import Call, Steps
from conveyor.client.rest import AsyncRest, SyncRest
from conveyor.client.stream import AsyncStream, StreamUnavailable, SyncStream

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0

Connection = Literal["auto", "stream", "rest"]
"""How a session reaches the server: the persistent connection, falling back to REST where the
server does not offer it ("auto"); only the persistent connection; only REST."""


IN_PROCESS = "in-process"
"""The `url` of a session whose calls go `through` a transport of this process."""


class SyncTransport(Protocol):
    """What carries a blocking session's calls: sends one call and returns its answer (any
    number of threads at once), raising ServerUnavailableError when no answer can come."""

    def send(self, call: Call[Any]) -> Reply: ...

    def close(self) -> None: ...


class SyncSession:
    """Sends calls for the blocking client and the worker. Safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None,
        connection: Connection = "auto",
        through: SyncTransport | None = None,
    ) -> None:
        """`through`: send every call on this transport instead of the network (`url`, `token`,
        `transport` and `connection` then do not matter); the session closes it when closed."""
        self._stream: SyncStream | None = None
        self._direct: SyncTransport
        """What carries the calls the persistent connection does not: REST, or `through`."""
        if through is not None:
            self.url = IN_PROCESS
            self._connection: Connection = "rest"
            self._direct = through
            return
        self.url = server_url(url)
        self._connection = "rest" if transport is not None else connection
        self._direct = SyncRest(self.url, token=token, timeout_s=timeout_s, transport=transport)
        if self._connection != "rest":
            self._stream = SyncStream(self.url, token=token, timeout_s=timeout_s)

    def send(self, call: Call[T]) -> T:
        return read_answer(call, self._transport_send(call))

    def _transport_send(self, call: Call[Any]) -> Reply:
        return list(self._replies(call))[-1]

    def follow(self, call: Call[T]) -> Following[T]:
        """Each answer of a call that may answer more than once (a following lease), as it
        comes: on the persistent connection, all of them; over REST or in process, its one."""
        replies = self._replies(call)
        return Following((read_answer(call, reply) for reply in replies), replies.stop)

    def _replies(self, call: Call[Any]) -> Following[Reply]:
        if self._stream is not None:
            try:
                return self._stream.replies(call)
            except StreamUnavailable:  # the handshake was refused
                if self._connection == "stream":
                    raise
                self._stream.close()
                self._stream = None  # this server has no persistent connection: REST from now on
        return Following(iter([self._direct.send(call)]))

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
        if self._stream is not None:
            self._stream.close()
        self._direct.close()


class AsyncSession:
    """Sends calls for the AsyncClient, on the persistent connection or REST as SyncSession."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
        connection: Connection = "auto",
    ) -> None:
        self.url = server_url(url)
        self._connection = "rest" if transport is not None else connection
        self._rest = AsyncRest(self.url, token=token, timeout_s=timeout_s, transport=transport)
        self._stream = (
            AsyncStream(self.url, token=token, timeout_s=timeout_s)
            if self._connection != "rest"
            else None
        )

    async def send(self, call: Call[T]) -> T:
        return read_answer(call, await self._transport_send(call))

    async def _transport_send(self, call: Call[Any]) -> Reply:
        if self._stream is not None:
            try:
                return await self._stream.send(call)
            except StreamUnavailable:
                if self._connection == "stream":
                    raise
                await self._stream.close()
                self._stream = None
        return await self._rest.send(call)

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
        if self._stream is not None:
            await self._stream.close()
        await self._rest.close()
