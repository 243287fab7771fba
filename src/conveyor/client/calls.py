"""Every call of the client API, built from the operations' declarations
(conveyor.api.operations): an operation, its parameters and body, and the model of its answer.

A `Call` is plain data. The session sends it on the persistent connection (as a frame) or over
REST (its method, path and query string, which it derives from the declaration), and turns the
answer into a model or an error, for the sync and the async client alike, so neither client
builds a request or reads an answer itself. Operations that take several calls (waiting for a
result, walking the pages of a listing) are generators of calls: the session sends each call
yielded and sends the answer back in.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from conveyor.api import operations as ops
from conveyor.api.control import (
    PauseList,
    PauseOut,
    PauseParams,
    PauseQueueParams,
    PauseScheduleParams,
    QueueRef,
    ResumeOut,
    WorkerSelection,
)
from conveyor.api.limits import LimitIn, LimitList, LimitOut, LimitRef
from conveyor.api.operations import Operation
from conveyor.api.params import (
    DeregisterParams,
    FailureQuery,
    NoParams,
    Params,
    ResultParams,
    ScheduleRef,
    SubmitParams,
    TaskRef,
    WaitParams,
    WorkerRef,
)
from conveyor.api.params import TaskQuery as QueryParams
from conveyor.api.schedules import ScheduleIn, ScheduleList, ScheduleOut
from conveyor.api.schemas import (
    API_PREFIX,
    MAX_BATCH,
    MAX_WAIT_IDS,
    BatchIn,
    BatchOut,
    FailuresOut,
    HealthOut,
    MonitorOut,
    ResultOut,
    ResultsOut,
    StatusOut,
    TaskDetail,
    TaskIds,
    TaskOut,
    TaskPage,
    WorkerList,
    WorkerOut,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.core.validation import validated
from conveyor.core.why import WhyAnswer
from conveyor.errors import ConflictError, InvalidSpecError

T = TypeVar("T")

MAX_RESULT_WAIT_S = 60.0
"""The longest the server holds one result request (like a lease's long-poll)."""
DEFAULT_RESULT_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One operation call and how to read its answer."""

    op: Operation
    parse: Callable[[bytes], T]
    """Turns a 2xx answer's body into the call's result."""
    params: Params = field(default_factory=NoParams)
    body: BaseModel | None = None
    conflict: type[ConflictError] = ConflictError
    """The error a 409 answer becomes."""
    secret: str = ""
    """A worker's own secret, for an operation that acts for that worker."""
    idempotent: bool = False
    """Sending it twice does what sending it once does (a submit with a key, a worker's fenced
    calls); reads always are. Only such a call is sent again when its connection broke."""

    @property
    def method(self) -> str:
        return self.op.method

    @property
    def path(self) -> str:
        """The REST path, from the server's root, with the parameters the path names quoted in."""
        path = self.op.url_path
        for name in self.op.path_names:
            # Ids come from the server, but a user may pass anything: never let one change the route.
            path = path.replace(f"{{{name}}}", quote(str(getattr(self.params, name)), safe=""))
        return path

    @property
    def query(self) -> tuple[tuple[str, str], ...]:
        """The REST query string: the parameters the path does not name, defaults left out."""
        items: list[tuple[str, str]] = []
        given = self.params.model_dump(mode="json", exclude_defaults=True)
        for name, value in given.items():
            if name in self.op.path_names or value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                items.append((name, _text(item)))
        return tuple(items)

    @property
    def hold_s(self) -> float:
        """How long the server may hold the call before answering (long-poll): added to the
        client's read timeout so that a long-poll is not mistaken for a dead server."""
        return self.op.hold_s(self.params, self.body)

    @property
    def resendable(self) -> bool:
        """Safe to send again after a connection broke without an answer (the server may or may
        not have handled it)."""
        return self.idempotent or self.method in ("GET", "HEAD")

    def body_bytes(self) -> bytes | None:
        # Defaults are left out: the server applies the same ones, and batches stay small.
        if self.body is None:
            return None
        return self.body.model_dump_json(exclude_defaults=True).encode()


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
        ops.SUBMIT,
        TaskOut.model_validate_json,
        SubmitParams(wait=wait_s),
        spec,
        idempotent=spec.key is not None,  # a second submit of a key returns the first task
    )


def submit_batch(specs: Sequence[TaskSpec]) -> Call[BatchOut]:
    if not 1 <= len(specs) <= MAX_BATCH:
        raise InvalidSpecError(
            f"a batch holds 1 to {MAX_BATCH} tasks, got {len(specs)}; "
            "split a larger one into several batches",
            field="tasks",
        )
    return Call(
        ops.SUBMIT_BATCH,
        BatchOut.model_validate_json,
        body=BatchIn(tasks=list(specs)),
        idempotent=all(spec.key is not None for spec in specs),
    )


TaskLike = str | TaskOut
"""A task named by its id, or by what submit returned for it."""


def task_id_of(task: TaskLike) -> str:
    """The id of `task`, given as its id or as a task the server returned."""
    if isinstance(task, str):
        return task
    if isinstance(task, TaskOut):
        return task.id
    raise TypeError(f"a task is named by its id (str) or a TaskOut, not {type(task).__name__}")


def get(task_id: TaskLike) -> Call[TaskDetail]:
    return Call(ops.GET_TASK, TaskDetail.model_validate_json, TaskRef(task_id=task_id_of(task_id)))


def result(task_id: TaskLike, wait_s: float = 0.0) -> Call[ResultOut]:
    wait_s = min(max(wait_s, 0.0), MAX_RESULT_WAIT_S)
    return Call(
        ops.GET_RESULT,
        ResultOut.model_validate_json,
        ResultParams(task_id=task_id_of(task_id), wait=wait_s),
    )


def results(task_ids: Sequence[str], wait_s: float = 0.0) -> Call[ResultsOut]:
    wait_s = min(max(wait_s, 0.0), MAX_RESULT_WAIT_S)
    return Call(
        ops.WAIT_RESULTS,
        ResultsOut.model_validate_json,
        WaitParams(wait=wait_s),
        TaskIds.model_construct(ids=list(task_ids)),
    )


def wait_for_results(
    tasks: Iterable[TaskLike], *, timeout_s: float | None, clock: Callable[[], float]
) -> Steps[list[ResultOut]]:
    """The results of every task, in order, once all have ended or `timeout_s` has passed
    (None: as long as it takes); MAX_WAIT_IDS ids per call, each held at most
    DEFAULT_RESULT_WAIT_S by the server, asking again only for those still going."""
    task_ids = [task_id_of(task) for task in tasks]
    give_up_at = None if timeout_s is None else clock() + max(timeout_s, 0.0)
    found: dict[str, ResultOut] = {}
    for start in range(0, len(task_ids), MAX_WAIT_IDS):
        going = list(dict.fromkeys(task_ids[start : start + MAX_WAIT_IDS]))
        while going:
            left_s = DEFAULT_RESULT_WAIT_S if give_up_at is None else give_up_at - clock()
            answer: ResultsOut = yield results(
                going, round(max(0.0, min(left_s, DEFAULT_RESULT_WAIT_S)), 3)
            )
            found.update((r.id, r) for r in answer.results)
            going = [r.id for r in answer.results if not r.done]
            if give_up_at is not None and clock() >= give_up_at:
                break
    return [found[task_id] for task_id in task_ids]


def cancel(task_id: TaskLike) -> Call[TaskOut]:
    return Call(ops.CANCEL_TASK, TaskOut.model_validate_json, TaskRef(task_id=task_id_of(task_id)))


def retry(task_id: TaskLike) -> Call[TaskOut]:
    return Call(ops.RETRY_TASK, TaskOut.model_validate_json, TaskRef(task_id=task_id_of(task_id)))


def delete(task_id: TaskLike) -> Call[None]:
    return Call(ops.DELETE_TASK, _no_content, TaskRef(task_id=task_id_of(task_id)))


def failures(window: int, limit: int) -> Call[FailuresOut]:
    query = FailureQuery(window=window, limit=limit)
    return Call(ops.LIST_FAILURES, FailuresOut.model_validate_json, query)


def why(task_id: TaskLike) -> Call[WhyAnswer]:
    return Call(ops.WHY_TASK, WhyAnswer.model_validate_json, TaskRef(task_id=task_id_of(task_id)))


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

    def params(self, cursor: str | None) -> QueryParams:
        fields: dict[str, Any] = {
            "state": list(self.states) or None,
            "queue": self.queue,
            "name": self.name,
            "handler": self.handler,
            "cursor": cursor,
        }
        if self.labels:
            fields["label"] = [f"{key}:{value}" for key, value in self.labels]
        if self.limit is not None:
            fields["limit"] = self.limit
        # Not validated here: the server says what is wrong, naming the parameter.
        return QueryParams.model_construct(**fields)


def list_tasks(query: TaskQuery, cursor: str | None = None) -> Call[TaskPage]:
    return Call(ops.LIST_TASKS, TaskPage.model_validate_json, query.params(cursor))


def every_page(query: TaskQuery) -> Steps[None]:
    """Pages of a listing, first to last, following `next_cursor`."""
    cursor: str | None = None
    while True:
        page: TaskPage = yield list_tasks(query, cursor)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def wait_for_result(
    task_id: TaskLike, *, wait_s: float | None, timeout_s: float | None, clock: Callable[[], float]
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
    return Call(ops.ADD_SCHEDULE, ScheduleOut.model_validate_json, body=spec)


def schedules() -> Call[ScheduleList]:
    return Call(ops.LIST_SCHEDULES, ScheduleList.model_validate_json)


def remove_schedule(name: str) -> Call[None]:
    return Call(ops.REMOVE_SCHEDULE, _no_content, ScheduleRef(name=name))


# ---- workers, status --------------------------------------------------------------------------


def workers() -> Call[WorkerList]:
    return Call(ops.LIST_WORKERS, WorkerList.model_validate_json)


def worker(worker_id: str) -> Call[WorkerOut]:
    return Call(ops.GET_WORKER, WorkerOut.model_validate_json, WorkerRef(worker_id=worker_id))


def deregister(worker_id: str, secret: str = "", *, stopped: bool = False) -> Call[None]:
    params = DeregisterParams(worker_id=worker_id, stopped=stopped)
    return Call(ops.DEREGISTER_WORKER, _no_content, params, secret=secret)


# ---- the operator's controls: pauses, drains --------------------------------------------------


def _moment(until: datetime | None) -> datetime | None:
    """A datetime without a timezone is this machine's local time, as datetime.now() gives."""
    return until if until is None or until.tzinfo is not None else until.astimezone()


def pause_queue(queue: str, until: datetime | None = None) -> Call[PauseOut]:
    params = PauseQueueParams.model_construct(queue=queue, until=_moment(until))
    return Call(ops.PAUSE_QUEUE, PauseOut.model_validate_json, params, idempotent=True)


def resume_queue(queue: str) -> Call[ResumeOut]:
    params = QueueRef.model_construct(queue=queue)
    return Call(ops.RESUME_QUEUE, ResumeOut.model_validate_json, params, idempotent=True)


def pause_schedule(name: str, until: datetime | None = None) -> Call[PauseOut]:
    params = PauseScheduleParams.model_construct(name=name, until=_moment(until))
    return Call(ops.PAUSE_SCHEDULE, PauseOut.model_validate_json, params, idempotent=True)


def resume_schedule(name: str) -> Call[ResumeOut]:
    params = ScheduleRef(name=name)
    return Call(ops.RESUME_SCHEDULE, ResumeOut.model_validate_json, params, idempotent=True)


def pause_all(until: datetime | None = None) -> Call[PauseOut]:
    params = PauseParams.model_construct(until=_moment(until))
    return Call(ops.PAUSE_ALL, PauseOut.model_validate_json, params, idempotent=True)


def resume_all() -> Call[ResumeOut]:
    return Call(ops.RESUME_ALL, ResumeOut.model_validate_json, idempotent=True)


def pauses() -> Call[PauseList]:
    return Call(ops.LIST_PAUSES, PauseList.model_validate_json)


def drain_workers(
    ids: Sequence[str] = (),
    *,
    queue: str | None = None,
    host: str | None = None,
    stop: bool = False,
) -> Call[WorkerList]:
    """Workers by id, or by queue and host; with `stop`, they hand back their tasks at once."""
    body = WorkerSelection.model_construct(ids=list(ids) or None, queue=queue, host=host)
    op = ops.STOP_WORKERS if stop else ops.DRAIN_WORKERS
    return Call(op, WorkerList.model_validate_json, body=body, idempotent=True)


# ---- concurrency and rate limits --------------------------------------------------------------


def set_limit(
    name: str, *, concurrency: int | None, rate: int | None, per_s: float
) -> Call[LimitOut]:
    """Checked here (InvalidSpecError naming the field), as the server would."""
    body = validated(LimitIn, {"concurrency": concurrency, "rate": rate, "per_s": per_s})
    params = LimitRef.model_construct(limit=name)
    return Call(ops.SET_LIMIT, LimitOut.model_validate_json, params, body, idempotent=True)


def limits() -> Call[LimitList]:
    return Call(ops.LIST_LIMITS, LimitList.model_validate_json)


def limit(name: str) -> Call[LimitOut]:
    return Call(ops.GET_LIMIT, LimitOut.model_validate_json, LimitRef.model_construct(limit=name))


def delete_limit(name: str) -> Call[None]:
    return Call(ops.DELETE_LIMIT, _no_content, LimitRef.model_construct(limit=name))


def status() -> Call[StatusOut]:
    return Call(ops.STATUS, StatusOut.model_validate_json)


def monitor() -> Call[MonitorOut]:
    return Call(ops.MONITOR, MonitorOut.model_validate_json)


def health() -> Call[HealthOut]:
    return Call(ops.HEALTH, HealthOut.model_validate_json)


def _text(value: object) -> str:
    """A query string value: numbers as short as they are (wait=5, not wait=5.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
