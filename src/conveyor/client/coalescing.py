"""Concurrent submit calls of an AsyncClient, sent together: one request for many tasks.

Code that submits with many calls in flight (`asyncio.gather` over `client.submit(...)`) would
pay a request and a response per task, on the client and on the server, and each answer waits
for its own commit. Here the calls queued while earlier requests are out travel together in one
`POST /tasks/batch`: a call still returns its own task, only after the server has committed it,
and a lone call goes alone, at once, as `POST /tasks`.

A batch is all or nothing on the server, so a bad spec would fail its neighbours: when the server
refuses a batch (422, 404, 409, 413), each of its calls is sent again on its own and gets its own
answer. Specs with a `name` are never batched with others: within a batch, names are what
`depends_on` and `$result` refer to, and a single submit must keep meaning what it says.
"""

from __future__ import annotations

import asyncio
from collections import deque

from conveyor.api.schemas import MAX_BATCH, TaskOut
from conveyor.client import calls
from conveyor.client.session import AsyncSession
from conveyor.core.spec import TaskSpec
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError

MAX_REQUESTS_IN_FLIGHT = 4
"""Submit requests out at once; calls made meanwhile wait and go in the next ones."""

REFUSALS = (InvalidSpecError, NotFoundError, ConflictError)
"""The server's answers about a batch's content: its calls are worth sending one by one."""


class SubmitCoalescer:
    def __init__(self, session: AsyncSession, *, max_batch: int = MAX_BATCH) -> None:
        self._session = session
        self._max_batch = max_batch
        self._queued: deque[tuple[TaskSpec, asyncio.Future[TaskOut]]] = deque()
        self._sending = 0
        """Senders at work, counted down in the same step as they find the queue empty, so
        that a call queued after that step always starts a sender of its own."""
        self._senders: set[asyncio.Task[None]] = set()
        """Kept here: the event loop holds only weak references to its tasks."""

    async def submit(self, spec: TaskSpec) -> TaskOut:
        if spec.name is not None:
            return await self._session.send(calls.submit(spec))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskOut] = loop.create_future()
        self._queued.append((spec, answer))
        if self._sending < MAX_REQUESTS_IN_FLIGHT:
            self._sending += 1
            sender = loop.create_task(self._send_queued())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await answer

    async def _send_queued(self) -> None:
        try:
            while self._queued:
                count = min(len(self._queued), self._max_batch)
                group = [self._queued.popleft() for _ in range(count)]
                group = [(spec, answer) for spec, answer in group if not answer.cancelled()]
                if group:
                    await self._send(group)
        finally:
            self._sending -= 1

    async def _send(self, group: list[tuple[TaskSpec, asyncio.Future[TaskOut]]]) -> None:
        if len(group) == 1:
            await self._send_alone(*group[0])
            return
        try:
            tasks = (await self._session.send(calls.submit_batch([s for s, _ in group]))).tasks
        except REFUSALS:
            await asyncio.gather(*(self._send_alone(spec, answer) for spec, answer in group))
            return
        except Exception as exc:  # unreachable, unavailable, not allowed: the same for each call
            for _, answer in group:
                _settle(answer, exc=exc)
            return
        for (_, answer), task in zip(group, tasks, strict=True):
            _settle(answer, task)

    async def _send_alone(self, spec: TaskSpec, answer: asyncio.Future[TaskOut]) -> None:
        try:
            task = await self._session.send(calls.submit(spec))
        except Exception as exc:
            _settle(answer, exc=exc)
        else:
            _settle(answer, task)


def _settle(
    answer: asyncio.Future[TaskOut], task: TaskOut | None = None, *, exc: Exception | None = None
) -> None:
    if answer.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        assert task is not None
        answer.set_result(task)
