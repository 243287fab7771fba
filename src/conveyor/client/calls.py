"""Every REST call of the client API, described once: method, path, query, body, answer model.

A `Call` is plain data. `session.py` turns it into an HTTP request and the answer into a model
or an error, for the sync and the async client alike, so neither client builds a request or
reads an answer itself. Operations that take several calls (waiting for a result, walking the
pages of a listing) are generators of calls: the session sends each call yielded and sends the
answer back in.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from conveyor.api.schedules import ScheduleIn, ScheduleList, ScheduleOut
from conveyor.api.schemas import (
    API_PREFIX,
    MAX_BATCH,
    BatchIn,
    BatchOut,
    HealthOut,
    MonitorOut,
    ResultOut,
    StatusOut,
    TaskDetail,
    TaskOut,
    TaskPage,
    WorkerList,
    WorkerOut,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.errors import ConflictError, InvalidSpecError

T = TypeVar("T")

MAX_RESULT_WAIT_S = 60.0
"""The longest the server holds one result request (like a lease's long-poll)."""
DEFAULT_RESULT_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    """From the server's root, API_PREFIX included; path parameters already quoted."""
    parse: Callable[[bytes], T]
    """Turns a 2xx answer's body into the call's result."""
    params: tuple[tuple[str, str], ...] = ()
    body: BaseModel | None = None
    hold_s: float = 0.0
    """How long the server may hold the request before answering (long-poll): added to the
    client's read timeout so that a long-poll is not mistaken for a dead server."""
    conflict: type[ConflictError] = ConflictError
    """The error a 409 answer becomes."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers of this call alone (a worker's secret), on top of the session's."""
    idempotent: bool = False
    """Sending it twice does what sending it once does (a submit with a key, a worker's fenced
    calls); reads always are. Only such a call is sent again when its connection broke."""

    @property
    def resendable(self) -> bool:
        """Safe to send again after a connection broke without an answer (the server may or may
        not have handled it)."""
        return self.idempotent or self.method in ("GET", "HEAD")


Steps = Generator[Call[Any], Any, T]
"""An operation of several calls: yields each call, receives its parsed answer, returns a value."""


def _no_content(_: bytes) -> None:
    return None


def api_path(*parts: str) -> str:
    # Ids come from the server, but a user may pass anything: never let one change the route.
    return API_PREFIX + "".join("/" + quote(part, safe="") for part in parts)


# ---- tasks ------------------------------------------------------------------------------------


def submit(spec: TaskSpec, wait_s: float = 0.0) -> Call[TaskOut]:
    """With `wait_s`, the server answers once the task has ended, or after `wait_s` seconds."""
    wait_s = min(max(wait_s, 0.0), MAX_RESULT_WAIT_S)
    return Call(
        "POST",
        api_path("tasks"),
        TaskOut.model_validate_json,
        body=spec,
        params=(("wait", _number(wait_s)),) if wait_s else (),
        hold_s=wait_s,
        idempotent=spec.key is not None,  # a second submit of a key returns the first task
    )


def submit_batch(specs: Sequence[TaskSpec]) -> Call[BatchOut]:
    if not 1 <= len(specs) <= MAX_BATCH:
        raise InvalidSpecError(
            f"a batch holds 1 to {MAX_BATCH} tasks, got {len(specs)}; "
            "split a larger one into several batches",
            field="tasks",
        )
    body = BatchIn(tasks=list(specs))
    return Call(
        "POST",
        api_path("tasks", "batch"),
        BatchOut.model_validate_json,
        body=body,
        idempotent=all(spec.key is not None for spec in specs),
    )


def get(task_id: str) -> Call[TaskDetail]:
    return Call("GET", api_path("tasks", task_id), TaskDetail.model_validate_json)


def result(task_id: str, wait_s: float = 0.0) -> Call[ResultOut]:
    wait_s = min(max(wait_s, 0.0), MAX_RESULT_WAIT_S)
    return Call(
        "GET",
        api_path("tasks", task_id, "result"),
        ResultOut.model_validate_json,
        params=(("wait", _number(wait_s)),) if wait_s else (),
        hold_s=wait_s,
    )


def cancel(task_id: str) -> Call[TaskOut]:
    return Call("POST", api_path("tasks", task_id, "cancel"), TaskOut.model_validate_json)


def retry(task_id: str) -> Call[TaskOut]:
    return Call("POST", api_path("tasks", task_id, "retry"), TaskOut.model_validate_json)


def delete(task_id: str) -> Call[None]:
    return Call("DELETE", api_path("tasks", task_id), _no_content)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters of GET /tasks. Several states match any of them; labels must all match."""

    states: tuple[TaskState, ...] = ()
    queue: str | None = None
    name: str | None = None
    handler: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    limit: int | None = None

    @classmethod
    def of(
        cls,
        state: TaskState | str | Iterable[TaskState | str] | None,
        queue: str | None,
        name: str | None,
        handler: str | None,
        labels: Mapping[str, str] | None,
        limit: int | None,
    ) -> TaskQuery:
        if state is None:
            states: tuple[TaskState, ...] = ()
        elif isinstance(state, str):
            states = (TaskState(state),)
        else:
            states = tuple(TaskState(s) for s in state)
        return cls(states, queue, name, handler, tuple((labels or {}).items()), limit)

    def params(self, cursor: str | None) -> tuple[tuple[str, str], ...]:
        params = [("state", s.value) for s in self.states]
        for key, value in (("queue", self.queue), ("name", self.name), ("handler", self.handler)):
            if value is not None:
                params.append((key, value))
        params += [("label", f"{key}:{value}") for key, value in self.labels]
        if self.limit is not None:
            params.append(("limit", str(self.limit)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return tuple(params)


def list_tasks(query: TaskQuery, cursor: str | None = None) -> Call[TaskPage]:
    return Call("GET", api_path("tasks"), TaskPage.model_validate_json, params=query.params(cursor))


def every_page(query: TaskQuery) -> Steps[None]:
    """Pages of a listing, first to last, following `next_cursor`."""
    cursor: str | None = None
    while True:
        page: TaskPage = yield list_tasks(query, cursor)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def wait_for_result(
    task_id: str, *, wait_s: float | None, timeout_s: float | None, clock: Callable[[], float]
) -> Steps[ResultOut]:
    """Ask for the result until the task is done or the time is up.

    `timeout_s` is the longest the whole operation waits (default: `wait_s`, and 0 when both
    are None: look once); `wait_s` is the longest one request is held by the server (default
    30 s, at most 60), so no connection stays open long enough for a proxy to cut it.
    """
    total_s = timeout_s if timeout_s is not None else (wait_s or 0.0)
    hold_s = min(wait_s if wait_s is not None else DEFAULT_RESULT_WAIT_S, MAX_RESULT_WAIT_S)
    total_s = max(total_s, 0.0)
    give_up_at = clock() + total_s
    left_s = total_s
    while True:
        # Milliseconds are plenty, and keep the query readable (wait=5, not wait=4.9999993).
        answer: ResultOut = yield result(task_id, round(min(hold_s, left_s), 3))
        left_s = give_up_at - clock()
        # A zero hold would make this loop spin: then it only ever looks once.
        if answer.done or left_s <= 0 or hold_s <= 0:
            return answer


def run(spec: TaskSpec, *, wait_s: float, clock: Callable[[], float]) -> Steps[ResultOut]:
    """Submit and wait up to `wait_s` seconds in all for the end: in the submit request itself
    (one round trip when the task is quick), then as `wait_for_result` does."""
    wait_s = max(wait_s, 0.0)
    give_up_at = clock() + wait_s
    task: TaskOut = yield submit(spec, round(min(wait_s, DEFAULT_RESULT_WAIT_S), 3))
    answer = ResultOut.of(task)
    left_s = give_up_at - clock()
    if answer.done or left_s <= 0:
        return answer
    return (yield from wait_for_result(task.id, wait_s=None, timeout_s=left_s, clock=clock))


# ---- schedules --------------------------------------------------------------------------------


def add_schedule(spec: ScheduleIn) -> Call[ScheduleOut]:
    return Call("POST", api_path("schedules"), ScheduleOut.model_validate_json, body=spec)


def schedules() -> Call[ScheduleList]:
    return Call("GET", api_path("schedules"), ScheduleList.model_validate_json)


def remove_schedule(name: str) -> Call[None]:
    return Call("DELETE", api_path("schedules", name), _no_content)


# ---- workers, status --------------------------------------------------------------------------


def workers() -> Call[WorkerList]:
    return Call("GET", api_path("workers"), WorkerList.model_validate_json)


def worker(worker_id: str) -> Call[WorkerOut]:
    return Call("GET", api_path("workers", worker_id), WorkerOut.model_validate_json)


def deregister(worker_id: str) -> Call[None]:
    return Call("DELETE", api_path("workers", worker_id), _no_content)


def status() -> Call[StatusOut]:
    return Call("GET", api_path("status"), StatusOut.model_validate_json)


def monitor() -> Call[MonitorOut]:
    return Call("GET", api_path("monitor"), MonitorOut.model_validate_json)


def health() -> Call[HealthOut]:
    # At the root, not under the API prefix: load balancers probe it.
    return Call("GET", "/health", HealthOut.model_validate_json)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
