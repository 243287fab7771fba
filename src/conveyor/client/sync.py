"""Client: the blocking Python SDK for a Conveyor server.

Every method is one line: it picks the call described in `calls.py` and lets the session send
it. AsyncClient (in `aio.py`) has the same methods over the same calls.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from conveyor.client.session import DEFAULT_TIMEOUT_S, DEFAULT_URL, Connection, SyncSession
from conveyor.client.specs import SpecOptions, Submittable, build_spec
from conveyor.core.bulk import BulkAction
from conveyor.core.schedules import Misfire
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.core.types import JSON
from conveyor.core.validation import validated
from conveyor.core.why import WhyAnswer

StateFilter = TaskState | str | Iterable[TaskState | str] | None


class Client:
    """Submit and manage tasks on a Conveyor server.

    ```python
    with Client("http://127.0.0.1:8000") as client:
        task = client.submit("sha256", "hello", timeout_s=5)
        print(client.result(task.id).result)
    ```

    Errors are ConveyorError subclasses (see `conveyor.errors`): NotFoundError, ConflictError,
    InvalidSpecError naming the field, StoreBusyError and ServerUnavailableError with
    `retry_after_s`. `transport` swaps the network for tests (`httpx.MockTransport`); for an
    in-process ASGI app use AsyncClient with `httpx.ASGITransport`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        connection: Connection = "auto",
    ) -> None:
        self._session = SyncSession(
            url, token=token, timeout_s=timeout_s, transport=transport, connection=connection
        )

    @property
    def url(self) -> str:
        return self._session.url

    def submit(
        self, handler: Submittable, /, *args: JSON, **options: Unpack[SpecOptions]
    ) -> TaskOut:
        """Submit one task: `submit("sha256", "text", timeout_s=5)`; options are TaskSpec fields.

        `handler` is a handler name, a module-level function, a `@task` function (its defaults
        apply, and options override them) or a TaskSpec (then give no args). With a `key`, a
        second submit returns the first task.
        """
        return self._session.send(calls.submit(build_spec(handler, args, options)))

    def run(
        self,
        handler: Submittable,
        /,
        *args: JSON,
        wait_s: float = calls.DEFAULT_RESULT_WAIT_S,
        **options: Unpack[SpecOptions],
    ) -> ResultOut:
        """Submit one task and wait up to `wait_s` seconds (`math.inf`: as long as it takes) for
        its result: `run("echo", 1).result`. The submit request itself waits for the end, so a
        quick task costs one round trip. Returns `done=False` if it has not ended in time.
        """
        spec = build_spec(handler, args, options)
        return self._session.run(calls.run(spec, wait_s=wait_s, clock=time.monotonic))

    def submit_batch(self, specs: Iterable[TaskSpec]) -> builtins.list[TaskOut]:
        """Submit specs atomically: all or none. `depends_on` may name other specs of the batch."""
        return self._session.send(calls.submit_batch(builtins.list(specs))).tasks

    def get(self, task_id: TaskLike) -> TaskDetail:
        """The task with its attempts and dependents."""
        return self._session.send(calls.get(task_id))

    def result(
        self,
        task_id: TaskLike,
        *,
        wait_s: float | None = None,
        timeout_s: float | None = None,
    ) -> ResultOut:
        """The task's result, waiting up to `timeout_s` seconds for it to finish.

        `result(id)` looks once; `result(id, wait_s=10)` waits up to 10 s; `result(id,
        timeout_s=math.inf)` waits as long as it takes. A long wait is split into requests of
        at most `wait_s` (default 30, at most 60) seconds each. Returns `done=False` if the task
        has not finished in time.
        """
        return self._session.run(
            calls.wait_for_result(task_id, wait_s=wait_s, timeout_s=timeout_s, clock=time.monotonic)
        )

    def wait(
        self, task_ids: Iterable[TaskLike], *, timeout_s: float | None = None
    ) -> builtins.list[ResultOut]:
        """The results of every task, in the order given, once all have ended, or once
        `timeout_s` seconds have passed (None: as long as it takes; those not ended then have
        `done=False`). One call asks for up to 1,000 tasks and holds until they have all ended,
        so waiting for many tasks costs a few round trips, not one each."""
        steps = calls.wait_for_results(task_ids, timeout_s=timeout_s, clock=time.monotonic)
        return self._session.run(steps)

    def cancel(self, task_id: TaskLike) -> TaskOut:
        """Cancel a pending, queued or running task; a running one is killed on its worker."""
        return self._session.send(calls.cancel(task_id))

    def retry(self, task_id: TaskLike) -> TaskOut:
        """Run a failed, timed-out or cancelled task again, with its retries reset."""
        return self._session.send(calls.retry(task_id))

    def delete(self, task_id: TaskLike) -> None:
        """Remove a task that is not running."""
        return self._session.send(calls.delete(task_id))

    def failures(self, *, window: int = 10_000, limit: int = 50) -> FailuresOut:
        """The newest `window` failed or timed-out tasks grouped by error message, the largest
        groups first (at most `limit`), each with the filter that retries exactly that group:
        `client.retry_all(**group.filter)`."""
        return self._session.send(calls.failures(window, limit))

    def why(self, task_id: TaskLike) -> WhyAnswer:
        """Why the task is not running: every reason that holds it back, most immediate first
        (`answer.reasons`, each with a code, a sentence and its details), and whether no live
        worker could ever take it (`answer.unschedulable`)."""
        return self._session.send(calls.why(task_id))

    def retry_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        """Retry every failed, timed-out or cancelled task the filter selects (see
        `bulk.Selection`): `retry_all(state="failed", queue="emails")`.

        Returns the bulk action's record at once; the server changes the tasks in the
        background, `chunk_size` (default 500) per transaction, and `wait_bulk` follows it.
        With `dry_run=True` nothing changes: the answer counts the matching tasks by state and
        those that would change (`estimate`), with a sample of them. With a `key`, asking again
        returns that action (and resumes it if its server stopped) instead of starting another.
        """
        call = bulk.bulk_action(
            BulkAction.RETRY, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return self._session.send(call)

    def cancel_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        """Cancel every pending, queued or running task the filter selects (running ones are
        killed on their worker); otherwise as `retry_all`."""
        call = bulk.bulk_action(
            BulkAction.CANCEL, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return self._session.send(call)

    def delete_all(
        self,
        *,
        dry_run: bool = False,
        key: str | None = None,
        chunk_size: int | None = None,
        **where: Unpack[bulk.Selection],
    ) -> BulkOut:
        """Remove every task the filter selects that is not running (and that no live task
        waits on, unless that one goes too); otherwise as `retry_all`."""
        call = bulk.bulk_action(
            BulkAction.DELETE, where, dry_run=dry_run, key=key, chunk_size=chunk_size
        )
        return self._session.send(call)

    def bulk(self, bulk_id: str) -> BulkOut:
        """A bulk action's progress: tasks matched, changed and skipped so far, done or not."""
        return self._session.send(bulk.get_bulk(bulk_id))

    def wait_bulk(
        self,
        action: str | BulkOut,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[BulkOut], object] | None = None,
    ) -> BulkOut:
        """The bulk action (an id, or what `retry_all` & co. returned) once it is done, or as it
        is after `timeout_s` seconds (None: as long as it takes); `on_progress` is called with
        its record about every second meanwhile."""
        if isinstance(action, BulkOut) and (action.id is None or action.done):
            return action  # a dry run, or done already
        bulk_id = action if isinstance(action, str) else str(action.id)
        steps = bulk.wait_for_bulk(
            bulk_id, timeout_s=timeout_s, clock=time.monotonic, on_progress=on_progress
        )
        return self._session.run(steps)

    def list(
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
        """One page of tasks; pass `next_cursor` back as `cursor` for the next. See iter_tasks."""
        return self._session.send(
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
    ) -> Iterator[TaskOut]:
        """Every matching task, fetching pages of `page_size` as the iteration goes."""
        pages = calls.every_page(TaskQuery.of(state, queue, name, handler, labels, page_size))
        return (task for page in self._session.answers(pages) for task in page.tasks)

    def add_schedule(
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
        return self._session.send(calls.add_schedule(body))

    def schedules(self) -> builtins.list[ScheduleOut]:
        return (self._session.send(calls.schedules())).schedules

    def remove_schedule(self, name: str) -> None:
        return self._session.send(calls.remove_schedule(name))

    def workers(self) -> builtins.list[WorkerOut]:
        return self._session.send(calls.workers()).workers

    def worker(self, worker_id: str) -> WorkerOut:
        return self._session.send(calls.worker(worker_id))

    def deregister_worker(self, worker_id: str, *, stopped: bool = False) -> None:
        """Remove a worker; the tasks it was running go back to the queue when their leases
        run out, or at once if you know it is `stopped` (its machine is down, say)."""
        return self._session.send(calls.deregister(worker_id, stopped=stopped))

    def pause_queue(self, queue: str, *, until: datetime | None = None) -> PauseOut:
        """Lease nothing more from `queue`, on any server, until resume_queue() or until `until`
        (a datetime without a timezone is local time). Running tasks finish; submits go on."""
        return self._session.send(calls.pause_queue(queue, until))

    def resume_queue(self, queue: str) -> ResumeOut:
        """Lease from `queue` again; `resumed` is False if it was not paused."""
        return self._session.send(calls.resume_queue(queue))

    def pause_schedule(self, name: str, *, until: datetime | None = None) -> PauseOut:
        """Fire schedule `name` no more until resumed (or `until`); the firings it misses
        meanwhile follow its misfire policy then."""
        return self._session.send(calls.pause_schedule(name, until))

    def resume_schedule(self, name: str) -> ResumeOut:
        return self._session.send(calls.resume_schedule(name))

    def pause_all(self, *, until: datetime | None = None) -> PauseOut:
        """Lease nothing from any queue until resume_all() (or `until`); running tasks finish,
        submits and schedules go on."""
        return self._session.send(calls.pause_all(until))

    def resume_all(self) -> ResumeOut:
        """End pause_all(); queues paused on their own stay paused."""
        return self._session.send(calls.resume_all())

    def pauses(self) -> builtins.list[PauseOut]:
        """What is paused now."""
        return self._session.send(calls.pauses()).pauses

    def drain_workers(
        self,
        ids: Iterable[str] = (),
        *,
        queue: str | None = None,
        host: str | None = None,
    ) -> builtins.list[WorkerOut]:
        """Tell workers (by id, or every live one serving `queue` and on `host`) to lease nothing
        more, finish their running tasks and exit; returns the workers told."""
        call = calls.drain_workers(builtins.list(ids), queue=queue, host=host)
        return self._session.send(call).workers

    def stop_workers(
        self,
        ids: Iterable[str] = (),
        *,
        queue: str | None = None,
        host: str | None = None,
    ) -> builtins.list[WorkerOut]:
        """Like drain_workers(), but they hand their running tasks back at once (those run
        again elsewhere, without spending a retry) and exit."""
        call = calls.drain_workers(builtins.list(ids), queue=queue, host=host, stop=True)
        return self._session.send(call).workers

    def set_limit(
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
        return self._session.send(call)

    def limits(self) -> builtins.list[LimitOut]:
        """Every limit, with the tasks running that take it and the tasks it holds back."""
        return self._session.send(calls.limits()).limits

    def limit(self, name: str) -> LimitOut:
        return self._session.send(calls.limit(name))

    def delete_limit(self, name: str) -> None:
        """Remove limit `name`: the tasks it held back go as leases reach them."""
        return self._session.send(calls.delete_limit(name))

    def status(self) -> StatusOut:
        """Tasks by state and queue, workers alive, recent throughput."""
        return self._session.send(calls.status())

    def monitor(self) -> MonitorOut:
        """CPU, memory, disk and GPU of the server's host and of each worker."""
        return self._session.send(calls.monitor())

    def health(self) -> HealthOut:
        return self._session.send(calls.health())

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
