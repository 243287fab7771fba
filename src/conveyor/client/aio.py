"""AsyncClient: the asyncio Python SDK for a Conveyor server.

The same methods as Client (`sync.py`) over the same calls (`calls.py`); only the session that
sends them differs. Each method is documented once, on Client.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import Unpack

import httpx

from conveyor.api.control import PauseOut, ResumeOut
from conveyor.api.limits import LimitOut
from conveyor.api.schedules import ScheduleIn, ScheduleOut
from conveyor.api.schemas import (
    BulkOut,
    FailuresOut,
    HealthOut,
    MonitorOut,
    ResultOut,
    StatusOut,
    TaskDetail,
    TaskOut,
    TaskPage,
    WorkerOut,
)
from conveyor.client import bulk, calls
from conveyor.client.calls import TaskLike, TaskQuery
from conveyor.client.coalescing import SubmitCoalescer
from conveyor.client.session import DEFAULT_TIMEOUT_S, DEFAULT_URL, AsyncSession, Connection
from conveyor.client.specs import SpecOptions, Submittable, build_spec
from conveyor.client.sync import StateFilter
from conveyor.core.bulk import BulkAction
from conveyor.core.schedules import Misfire
from conveyor.core.spec import TaskSpec
from conveyor.core.types import JSON
from conveyor.core.validation import validated
from conveyor.core.why import WhyAnswer


class AsyncClient:
    """Client for asyncio code: `async with AsyncClient(url) as client: await client.submit(...)`.

    Calls go on one persistent connection, as many in flight at once as the code awaits
    (`connection="rest"`: over REST instead). `transport` swaps the network for tests
    (`httpx.MockTransport`, `httpx.ASGITransport`). With `coalesce_submits=True`, submit calls
    made while others are in flight go to the server together, as one batch
    (`conveyor.client.coalescing`): fewer transactions on the server.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        connection: Connection = "auto",
        coalesce_submits: bool = False,
    ) -> None:
        self._session = AsyncSession(
            url, token=token, timeout_s=timeout_s, transport=transport, connection=connection
        )
        self._coalescer = SubmitCoalescer(self._session) if coalesce_submits else None

    @property
    def url(self) -> str:
        return self._session.url

    async def submit(
        self, handler: Submittable, /, *args: JSON, **options: Unpack[SpecOptions]
    ) -> TaskOut:
        spec = build_spec(handler, args, options)
        if self._coalescer is not None:
            return await self._coalescer.submit(spec)
        return await self._session.send(calls.submit(spec))

    async def run(
        self,
        handler: Submittable,
        /,
        *args: JSON,
        wait_s: float = calls.DEFAULT_RESULT_WAIT_S,
        **options: Unpack[SpecOptions],
    ) -> ResultOut:
        spec = build_spec(handler, args, options)
        return await self._session.run(calls.run(spec, wait_s=wait_s, clock=time.monotonic))

    async def submit_batch(self, specs: Iterable[TaskSpec]) -> builtins.list[TaskOut]:
        return (await self._session.send(calls.submit_batch(builtins.list(specs)))).tasks

    async def get(self, task_id: TaskLike) -> TaskDetail:
        return await self._session.send(calls.get(task_id))

    async def result(
        self,
        task_id: TaskLike,
        *,
        wait_s: float | None = None,
        timeout_s: float | None = None,
    ) -> ResultOut:
        return await self._session.run(
            calls.wait_for_result(task_id, wait_s=wait_s, timeout_s=timeout_s, clock=time.monotonic)
        )

    async def wait(
        self, task_ids: Iterable[TaskLike], *, timeout_s: float | None = None
    ) -> builtins.list[ResultOut]:
        """The results of every task, in order, once all have ended (see Client.wait)."""
        steps = calls.wait_for_results(task_ids, timeout_s=timeout_s, clock=time.monotonic)
        return await self._session.run(steps)

    async def cancel(self, task_id: TaskLike) -> TaskOut:
        return await self._session.send(calls.cancel(task_id))

    async def retry(self, task_id: TaskLike) -> TaskOut:
        return await self._session.send(calls.retry(task_id))

    async def delete(self, task_id: TaskLike) -> None:
        return await self._session.send(calls.delete(task_id))

    async def failures(self, *, window: int = 10_000, limit: int = 50) -> FailuresOut:
        return await self._session.send(calls.failures(window, limit))

    async def why(self, task_id: TaskLike) -> WhyAnswer:
        return await self._session.send(calls.why(task_id))

    async def retry_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        call = bulk.bulk_action(
            BulkAction.RETRY, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return await self._session.send(call)

    async def cancel_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        call = bulk.bulk_action(
            BulkAction.CANCEL, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return await self._session.send(call)

    async def delete_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        call = bulk.bulk_action(
            BulkAction.DELETE, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return await self._session.send(call)

    async def bulk(self, bulk_id: str) -> BulkOut:
        return await self._session.send(bulk.get_bulk(bulk_id))

    async def wait_bulk(
        self,
        action: str | BulkOut,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[BulkOut], object] | None = None,
    ) -> BulkOut:
        if isinstance(action, BulkOut) and (action.id is None or action.done):
            return action
        bulk_id = action if isinstance(action, str) else str(action.id)
        steps = bulk.wait_for_bulk(
            bulk_id, timeout_s=timeout_s, clock=time.monotonic, on_progress=on_progress
        )
        return await self._session.run(steps)

    async def list(
        self,
        *,
        state: StateFilter = None,
        queue: str | None = None,
        name: str | None = None,
        handler: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        return await self._session.send(
            calls.list_tasks(TaskQuery.of(state, queue, name, handler, labels, limit), cursor)
        )

    def iter_tasks(
        self,
        *,
        state: StateFilter = None,
        queue: str | None = None,
        name: str | None = None,
        handler: str | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[TaskOut]:
        pages = calls.every_page(TaskQuery.of(state, queue, name, handler, labels, page_size))
        return (task async for page in self._session.answers(pages) for task in page.tasks)

    async def add_schedule(
        self,
        name: str,
        cron: str,
        task: TaskSpec,
        *,
        timezone: str = "UTC",
        misfire: Misfire = Misfire.ONCE,
        replace: bool = False,
    ) -> ScheduleOut:
        """Submit `task` at every firing of `cron` in `timezone`; see conveyor.core.schedules."""
        body = validated(
            ScheduleIn,
            dict(
                name=name, cron=cron, task=task, timezone=timezone, misfire=misfire, replace=replace
            ),
        )
        return await self._session.send(calls.add_schedule(body))

    async def schedules(self) -> builtins.list[ScheduleOut]:
        return (await self._session.send(calls.schedules())).schedules

    async def remove_schedule(self, name: str) -> None:
        return await self._session.send(calls.remove_schedule(name))

    async def workers(self) -> builtins.list[WorkerOut]:
        return (await self._session.send(calls.workers())).workers

    async def worker(self, worker_id: str) -> WorkerOut:
        return await self._session.send(calls.worker(worker_id))

    async def deregister_worker(self, worker_id: str, *, stopped: bool = False) -> None:
        return await self._session.send(calls.deregister(worker_id, stopped=stopped))

    async def pause_queue(self, queue: str, *, until: datetime | None = None) -> PauseOut:
        return await self._session.send(calls.pause_queue(queue, until))

    async def resume_queue(self, queue: str) -> ResumeOut:
        return await self._session.send(calls.resume_queue(queue))

    async def pause_schedule(self, name: str, *, until: datetime | None = None) -> PauseOut:
        return await self._session.send(calls.pause_schedule(name, until))

    async def resume_schedule(self, name: str) -> ResumeOut:
        return await self._session.send(calls.resume_schedule(name))

    async def pause_all(self, *, until: datetime | None = None) -> PauseOut:
        return await self._session.send(calls.pause_all(until))

    async def resume_all(self) -> ResumeOut:
        return await self._session.send(calls.resume_all())

    async def pauses(self) -> builtins.list[PauseOut]:
        return (await self._session.send(calls.pauses())).pauses

    async def drain_workers(
        self,
        ids: Iterable[str] = (),
        *,
        queue: str | None = None,
        host: str | None = None,
    ) -> builtins.list[WorkerOut]:
        call = calls.drain_workers(builtins.list(ids), queue=queue, host=host)
        return (await self._session.send(call)).workers

    async def stop_workers(
        self,
        ids: Iterable[str] = (),
        *,
        queue: str | None = None,
        host: str | None = None,
    ) -> builtins.list[WorkerOut]:
        call = calls.drain_workers(builtins.list(ids), queue=queue, host=host, stop=True)
        return (await self._session.send(call)).workers

    async def set_limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per_s: float = 1.0,
    ) -> LimitOut:
        """Store limit `name`, or replace it: at most `concurrency` of the tasks that take one
        of its keys running at once, and/or at most `rate` of them started in any `per_s`
        seconds. Tasks take it with `limits=["name"]`, or `["name:{kwargs.tenant}"]` for a
        bucket per key. Every server keeps to it from now on."""
        call = calls.set_limit(name, concurrency=concurrency, rate=rate, per_s=per_s)
        return await self._session.send(call)

    async def limits(self) -> builtins.list[LimitOut]:
        """Every limit, with the tasks running that take it and the tasks it holds back."""
        return (await self._session.send(calls.limits())).limits

    async def limit(self, name: str) -> LimitOut:
        return await self._session.send(calls.limit(name))

    async def delete_limit(self, name: str) -> None:
        """Remove limit `name`: the tasks it held back go as leases reach them."""
        return await self._session.send(calls.delete_limit(name))

    async def status(self) -> StatusOut:
        return await self._session.send(calls.status())

    async def monitor(self) -> MonitorOut:
        return await self._session.send(calls.monitor())

    async def health(self) -> HealthOut:
        return await self._session.send(calls.health())

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
