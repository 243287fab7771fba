"""Client and AsyncClient over httpx.MockTransport: the requests they build, the answers they
read, the errors they raise. Every table runs through both clients, so they cannot drift apart."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import conveyor.client
from conveyor.api.schemas import API_PREFIX, MAX_BATCH, ReportIn, ResultOut, TaskOut
from conveyor.client import AsyncClient, Client, SpecOptions, TaskFunction, WorkerConnection, task
from conveyor.client.calls import wait_for_result
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome
from conveyor.errors import (
    ConflictError,
    ConveyorError,
    InvalidSpecError,
    NotFoundError,
    ServerUnavailableError,
    StaleTokenError,
    StoreBusyError,
)

URL = "http://conveyor.test:8000"
NOW = "2026-01-01T00:00:00Z"


def task_json(task_id: str = "t1", **fields: Any) -> dict[str, Any]:
    return {
        "id": task_id, "name": None, "handler": "echo", "args": [], "kwargs": {},
        "queue": "default", "priority": 0, "state": "queued", "reason": None, "depends_on": [],
        "run_at": None, "timeout_s": None, "max_retries": 0, "retries_used": 0, "attempts": 0,
        "resources": {}, "key": None, "labels": {}, "require": {}, "prefer": {}, "limits": [],
        "held_on": None, "result": None, "error": None, "worker_id": None, "lease_expires_at": None, "created_at": NOW, "updated_at": NOW,
        "started_at": None, "finished_at": None, **fields,
    }  # fmt: skip


def result_json(done: bool = True, **fields: Any) -> dict[str, Any]:
    state = "succeeded" if done else "running"
    return {"id": "t1", "state": state, "done": done, "result": 3, "error": None, "reason": None,
            **fields}  # fmt: skip


def worker_json(worker_id: str = "w1") -> dict[str, Any]:
    return {
        "id": worker_id, "name": "w", "host": "h", "pid": 1, "concurrency": 2,
        "queues": ["default"], "resources": {}, "state": "alive", "registered_at": NOW,
        "last_seen_at": NOW, "metrics": {}, "running": [],
    }  # fmt: skip


@dataclass
class Server:
    """Answers requests from a list, in order, and records them."""

    answers: list[httpx.Response] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answers.pop(0)

    def answer(self, status: int = 200, body: Any = None, **headers: str) -> Server:
        if body is None:
            self.answers.append(httpx.Response(status, headers=headers))
        else:
            self.answers.append(httpx.Response(status, json=body, headers=headers))
        return self

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


Invoke = Callable[[Any], Any]


def call_both(server: Server, invoke: Invoke, **client_options: Any) -> tuple[Any, Any]:
    """Run `invoke(client)` on a Client, then on an AsyncClient; return both results.

    The server must hold the answers for both runs.
    """
    transport = httpx.MockTransport(server)
    with Client(URL, transport=transport, **client_options) as client:
        sync_result = invoke(client)
        if isinstance(sync_result, Iterator):
            sync_result = list(sync_result)  # while the client is open

    async def run_async() -> Any:
        async with AsyncClient(URL, transport=transport, **client_options) as client:
            outcome = invoke(client)
            if inspect.isawaitable(outcome):
                return await outcome
            return [item async for item in outcome]

    return sync_result, asyncio.run(run_async())


def raises_both(server: Server, invoke: Invoke) -> tuple[BaseException, BaseException]:
    errors: list[BaseException] = []
    for run in (_run_sync, _run_async):
        try:
            run(server, invoke)
        except ConveyorError as exc:
            errors.append(exc)
        else:
            raise AssertionError("no error raised")
    return errors[0], errors[1]


def _run_sync(server: Server, invoke: Invoke) -> None:
    with Client(URL, transport=httpx.MockTransport(server)) as client:
        invoke(client)


def _run_async(server: Server, invoke: Invoke) -> None:
    async def run() -> None:
        async with AsyncClient(URL, transport=httpx.MockTransport(server)) as client:
            await invoke(client)

    asyncio.run(run())


# ---- every method builds the right request -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    invoke: Invoke
    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    status: int
    answer: Any


CASES = [
    Case("submit name", lambda c: c.submit("echo", 1, "x", queue="q", priority=5),
         "POST", "/tasks", [], {"handler": "echo", "args": [1, "x"], "queue": "q", "priority": 5},
         201, task_json()),
    Case("submit kwargs and labels", lambda c: c.submit("sleep", kwargs={"seconds": 1},
         labels={"team": "a"}, timeout_s=2.5, key="k1", depends_on=["a", "b"]),
         "POST", "/tasks", [], {"handler": "sleep", "kwargs": {"seconds": 1}, "labels":
         {"team": "a"}, "timeout_s": 2.5, "key": "k1", "depends_on": ["a", "b"]}, 200, task_json()),
    Case("submit spec", lambda c: c.submit(TaskSpec(handler="sha256", args=["a"], name="n")),
         "POST", "/tasks", [], {"handler": "sha256", "args": ["a"], "name": "n"}, 201,
         task_json()),
    Case("submit_batch", lambda c: c.submit_batch([TaskSpec(handler="echo", name="a"),
         TaskSpec(handler="echo", depends_on=["a"])]), "POST", "/tasks/batch", [],
         {"tasks": [{"handler": "echo", "name": "a"}, {"handler": "echo", "depends_on": ["a"]}]},
         201, {"tasks": [task_json("t1"), task_json("t2")]}),
    Case("get", lambda c: c.get("t1"), "GET", "/tasks/t1", [], None, 200,
         {**task_json(), "attempt_log": [], "dependents": ["t2"]}),
    Case("result look", lambda c: c.result("t1"), "GET", "/tasks/t1/result", [], None, 200,
         result_json()),
    Case("result wait", lambda c: c.result("t1", wait_s=5), "GET", "/tasks/t1/result",
         [("wait", "5")], None, 200, result_json()),
    Case("cancel", lambda c: c.cancel("t1"), "POST", "/tasks/t1/cancel", [], None, 200,
         task_json(state="cancelled")),
    Case("retry", lambda c: c.retry("t1"), "POST", "/tasks/t1/retry", [], None, 200,
         task_json()),
    Case("delete", lambda c: c.delete("t1"), "DELETE", "/tasks/t1", [], None, 204, None),
    Case("why", lambda c: c.why("t1"), "GET", "/tasks/t1/why", [], None, 200,
         {"task_id": "t1", "state": "queued", "waiting": True, "unschedulable": True,
          "reasons": [{"code": "no_worker", "message": "no live worker serves its queue",
                       "tasks": [], "until": None, "pause": None, "limit": None, "workers": {},
                       "busy": None, "ahead": None}]}),
    # What submit returned names its task as well as the id does.
    Case("get by task", lambda c: c.get(TaskOut.model_validate(task_json("t9"))), "GET",
         "/tasks/t9", [], None, 200, {**task_json("t9"), "attempt_log": []}),
    Case("cancel by task", lambda c: c.cancel(TaskOut.model_validate(task_json("t9"))), "POST",
         "/tasks/t9/cancel", [], None, 200, task_json("t9", state="cancelled")),
    Case("wait by tasks", lambda c: c.wait([TaskOut.model_validate(task_json("t9")), "t8"]),
         "POST", "/tasks/results", [("wait", "30")], {"ids": ["t9", "t8"]}, 200,
         {"results": [result_json(id="t9"), result_json(id="t8")]}),
    Case("id is quoted", lambda c: c.get("a/b?c"), "GET", "/tasks/a%2Fb%3Fc", [], None, 200,
         {**task_json(), "attempt_log": []}),
    Case("list filters", lambda c: c.list(state=["queued", "running"], queue="q", name="n",
         handler="echo", labels={"team": "a", "env": "prod"}, limit=10, cursor="abc"),
         "GET", "/tasks", [("state", "queued"), ("state", "running"), ("queue", "q"),
         ("name", "n"), ("handler", "echo"), ("label", "team:a"), ("label", "env:prod"),
         ("limit", "10"), ("cursor", "abc")], None, 200, {"tasks": [], "next_cursor": None}),
    Case("list one state", lambda c: c.list(state="failed"), "GET", "/tasks",
         [("state", "failed")], None, 200, {"tasks": [task_json()], "next_cursor": None}),
    Case("workers", lambda c: c.workers(), "GET", "/workers", [], None, 200,
         {"workers": [worker_json()]}),
    Case("worker", lambda c: c.worker("w1"), "GET", "/workers/w1", [], None, 200, worker_json()),
    Case("deregister_worker", lambda c: c.deregister_worker("w1"), "DELETE", "/workers/w1", [],
         None, 204, None),
    Case("status", lambda c: c.status(), "GET", "/status", [], None, 200,
         {"counts": {"queued": 1}, "queues": {"default": {"queued": 1}}, "workers_alive": 1,
          "workers_total": 2, "finished_last_minute": 0, "unschedulable": 3}),
    Case("monitor", lambda c: c.monitor(), "GET", "/monitor", [], None, 200,
         {"server": {"cpu_percent": 1.0}, "workers": []}),
    Case("set_limit", lambda c: c.set_limit("tenant", concurrency=2, rate=10, per_s=60), "PUT",
         "/limits/tenant", [], {"concurrency": 2, "rate": 10, "per_s": 60.0}, 200,
         {"name": "tenant", "concurrency": 2, "rate": 10, "per_s": 60.0, "running": 0, "held": 0}),
    Case("set_limit concurrency only", lambda c: c.set_limit("db", concurrency=0), "PUT",
         "/limits/db", [], {"concurrency": 0}, 200,
         {"name": "db", "concurrency": 0, "rate": None, "per_s": 1.0, "running": 0, "held": 3}),
    Case("limit", lambda c: c.limit("db"), "GET", "/limits/db", [], None, 200,
         {"name": "db", "concurrency": 1, "rate": None, "per_s": 1.0, "running": 1, "held": 0}),
    Case("delete_limit", lambda c: c.delete_limit("db"), "DELETE", "/limits/db", [], None, 204,
         None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_method_builds_its_request_and_reads_its_answer(case: Case) -> None:
    server = Server()
    for _ in range(2):
        server.answer(case.status, case.answer)
    sync_result, async_result = call_both(server, case.invoke)

    assert sync_result == async_result
    for request in server.requests:
        assert request.method == case.method
        assert request.url.raw_path.decode().partition("?")[0] == API_PREFIX + case.path
        assert request.url.query.decode() == httpx.QueryParams(case.query).__str__()
        if case.body is None:
            assert request.content == b""
        else:
            assert request.headers["content-type"] == "application/json"
            assert json.loads(request.content) == case.body
        assert "authorization" not in request.headers
    if case.answer is None:
        assert sync_result is None
    elif "tasks" in case.answer and case.method == "POST":
        assert [t.id for t in sync_result] == ["t1", "t2"]  # submit_batch returns the tasks
    elif "results" in case.answer:
        assert [r.id for r in sync_result] == [r["id"] for r in case.answer["results"]]
    elif "workers" in case.answer and isinstance(sync_result, list):
        assert [w.id for w in sync_result] == ["w1"]
    else:
        assert sync_result.model_dump(mode="json") | case.answer == sync_result.model_dump(
            mode="json"
        )


def test_a_task_named_by_anything_else_is_a_clear_type_error() -> None:
    with Client(URL, transport=httpx.MockTransport(Server())) as client:
        with pytest.raises(TypeError, match=r"by its id \(str\) or a TaskOut, not dict"):
            client.wait([{"id": "t1"}])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="not int"):
            client.get(7)  # type: ignore[arg-type]


def test_health_is_at_the_root() -> None:
    server = Server().answer(body={"status": "ok", "version": "1", "store": "sqlite"})
    server.answer(body={"status": "ok", "version": "1", "store": "sqlite"})
    sync_result, async_result = call_both(server, lambda c: c.health())
    assert sync_result == async_result
    assert sync_result.status == "ok"
    assert [r.url.path for r in server.requests] == ["/health", "/health"]


def test_a_path_prefix_in_the_url_is_kept() -> None:
    server = Server().answer(body=worker_json())
    with Client("https://example.test/conveyor/", transport=httpx.MockTransport(server)) as c:
        c.worker("w1")
    assert str(server.last.url) == "https://example.test/conveyor/api/v1/workers/w1"


def test_a_url_without_scheme_means_http() -> None:
    assert Client("localhost:9000").url == "http://localhost:9000"


def test_the_token_is_sent_as_a_bearer_header() -> None:
    server = Server().answer(body=worker_json()).answer(body=worker_json())
    call_both(server, lambda c: c.worker("w1"), token="s3cret")
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer s3cret"] * 2


def test_a_long_poll_waits_longer_than_the_plain_timeout() -> None:
    server = Server().answer(body=result_json())
    with Client(URL, transport=httpx.MockTransport(server), timeout_s=3) as client:
        client.result("t1", wait_s=20)
    timeout = server.last.extensions["timeout"]
    assert timeout["connect"] == 3
    assert timeout["read"] == 23


# ---- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    id: str
    status: int
    body: Any
    headers: dict[str, str]
    error: type[ConveyorError]
    attributes: dict[str, Any]
    says: str


def validation(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}


ERROR_CASES = [
    ErrorCase("404", 404, {"detail": "no task t1"}, {}, NotFoundError, {}, "no task t1"),
    ErrorCase("409", 409, {"detail": "task t1 is running"}, {}, ConflictError, {}, "is running"),
    ErrorCase("422 names the field", 422, validation(["body", "queue"], "bad queue"), {},
              InvalidSpecError, {"field": "queue", "message": "bad queue"}, "bad queue"),
    ErrorCase("422 nested field", 422, validation(["body", "tasks", 3, "priority"], "too big"),
              {}, InvalidSpecError, {"field": "tasks.3.priority"}, "too big"),
    ErrorCase("422 field said once", 422,
              validation(["body", "depends_on"], "field 'depends_on': dependency cycle: a -> a"),
              {}, InvalidSpecError,
              {"field": "depends_on", "message": "dependency cycle: a -> a"}, "cycle"),
    ErrorCase("422 query", 422, validation(["query", "limit"], "must be > 0"), {},
              InvalidSpecError, {"field": "limit"}, "must be > 0"),
    ErrorCase("413", 413, {"detail": "body over 1048576 bytes"}, {}, InvalidSpecError, {},
              "too large"),
    ErrorCase("503 store busy", 503, {"detail": "the database is locked"}, {"Retry-After": "2"},
              StoreBusyError, {"retry_after_s": 2.0}, "locked"),
    ErrorCase("503 without Retry-After", 503, {"detail": "down"}, {}, ServerUnavailableError,
              {"retry_after_s": None}, "down"),
    ErrorCase("502 from a proxy", 502, None, {}, ServerUnavailableError, {}, "502"),
    ErrorCase("500", 500, {"detail": "internal server error"}, {}, ServerUnavailableError, {},
              "internal server error"),
    ErrorCase("429 with Retry-After", 429, {"detail": "slow down"}, {"Retry-After": "7"},
              ServerUnavailableError, {"retry_after_s": 7.0}, "slow down"),
    ErrorCase("401", 401, {"detail": "missing token"}, {}, ConveyorError, {}, "CONVEYOR_TOKEN"),
]  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
def test_each_error_status_raises_its_error(case: ErrorCase) -> None:
    server = Server()
    for _ in range(2):
        server.answer(case.status, case.body, **case.headers)
    sync_error, async_error = raises_both(server, lambda c: c.cancel("t1"))

    for error in (sync_error, async_error):
        assert type(error) is case.error
        assert case.says in str(error)
        for name, value in case.attributes.items():
            assert getattr(error, name) == value
    assert str(sync_error) == str(async_error)


def test_retry_after_may_be_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    server = Server()
    for _ in range(2):
        server.answer(503, {"detail": "busy"}, **{"Retry-After": format_datetime(when, True)})
    errors = raises_both(server, lambda c: c.status())
    for error in errors:
        assert isinstance(error, StoreBusyError)
        assert 25 <= error.retry_after_s <= 30


def test_an_unreadable_answer_is_a_server_error_not_a_crash() -> None:
    server = Server().answer(200, {"unexpected": True}).answer(200, {"unexpected": True})
    for error in raises_both(server, lambda c: c.get("t1")):
        assert isinstance(error, ServerUnavailableError)
        assert "could not be read" in str(error)


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_an_unreachable_server_says_where_and_what_to_do() -> None:
    errors: list[ServerUnavailableError] = []
    with (
        Client(URL, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(ServerUnavailableError) as caught,
    ):
        client.status()
    errors.append(caught.value)

    async def run() -> None:
        async with AsyncClient(URL, transport=httpx.MockTransport(refuse)) as client:
            await client.status()

    with pytest.raises(ServerUnavailableError) as caught_async:
        asyncio.run(run())
    errors.append(caught_async.value)
    for error in errors:
        assert URL in str(error)
        assert "Connection refused" in str(error)
        assert "conveyor server" in str(error) and "CONVEYOR_URL" in str(error)
        assert isinstance(error.__cause__, httpx.ConnectError)


def test_a_timeout_is_reported_as_such() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        Client(URL, transport=httpx.MockTransport(slow)) as client,
        pytest.raises(ServerUnavailableError, match="did not answer in time"),
    ):
        client.health()


# ---- multi-call operations ---------------------------------------------------------------------


def test_result_repeats_the_long_poll_until_done() -> None:
    server = Server()
    for _ in range(2):
        server.answer(body=result_json(done=False)).answer(body=result_json(done=False))
        server.answer(body=result_json(done=True))
    sync_result, async_result = call_both(
        server, lambda c: c.result("t1", wait_s=10, timeout_s=math.inf)
    )
    assert sync_result == async_result
    assert sync_result.done and sync_result.result == 3
    assert [r.url.params["wait"] for r in server.requests] == ["10"] * 6


def test_run_submits_and_waits_in_one_call_then_long_polls_if_needed() -> None:
    server = Server()
    for _ in range(2):
        server.answer(201, body=task_json("t1", state="succeeded", result=3))
        server.answer(201, body=task_json("t1", state="running"))
        server.answer(body=result_json(done=True))
    sync_result, async_result = call_both(
        server, lambda c: c.run("echo", 1, priority=2, wait_s=100)
    )
    assert sync_result == async_result
    assert (sync_result.id, sync_result.done, sync_result.result) == ("t1", True, 3)
    submit = server.requests[0]
    assert (submit.method, submit.url.path, submit.url.params["wait"]) == (
        "POST", f"{API_PREFIX}/tasks", "30"
    )  # fmt: skip
    assert json.loads(submit.content)["priority"] == 2
    # The second run's submit answered before the end: it waits on for the result.
    follow = server.requests[2]
    assert (follow.method, follow.url.path) == ("GET", f"{API_PREFIX}/tasks/t1/result")
    assert follow.url.params["wait"] == "30"  # a long-poll of the usual length


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(steps: Any, answers: Iterator[ResultOut], clock: FakeClock, spend: list[float]) -> Any:
    """Run a Steps generator by hand: each call 'takes' the time the server held it."""
    holds: list[float] = []
    answer = None
    try:
        while True:
            call = steps.send(answer)
            holds.append(call.hold_s)
            clock.now += spend.pop(0)
            answer = next(answers)
    except StopIteration as done:
        return done.value, holds


def not_done() -> Iterator[ResultOut]:
    while True:
        yield ResultOut.model_validate(result_json(done=False))


def test_result_gives_up_at_timeout_s_and_shortens_the_last_wait() -> None:
    clock = FakeClock()
    steps = wait_for_result("t1", wait_s=30, timeout_s=70, clock=clock)
    answer, holds = drive(steps, not_done(), clock, [30, 30, 10])
    assert not answer.done
    assert holds == [30, 30, 10]


def test_result_without_a_timeout_waits_once_for_wait_s() -> None:
    clock = FakeClock()
    _, holds = drive(
        wait_for_result("t1", wait_s=5, timeout_s=None, clock=clock), not_done(), clock, [5]
    )
    assert holds == [5]
    _, holds = drive(
        wait_for_result("t1", wait_s=None, timeout_s=None, clock=clock), not_done(), clock, [0]
    )
    assert holds == [0]  # just look


def test_result_splits_a_wait_longer_than_the_server_allows() -> None:
    clock = FakeClock()
    steps = wait_for_result("t1", wait_s=150, timeout_s=None, clock=clock)
    _, holds = drive(steps, not_done(), clock, [60, 60, 30])
    assert holds == [60, 60, 30]


def test_iter_tasks_follows_the_cursor_to_the_last_page() -> None:
    server = Server()
    for _ in range(2):
        server.answer(body={"tasks": [task_json("a"), task_json("b")], "next_cursor": "c1"})
        server.answer(body={"tasks": [task_json("c")], "next_cursor": None})
    sync_result, async_result = call_both(
        server, lambda c: c.iter_tasks(state="queued", page_size=2)
    )
    assert [t.id for t in sync_result] == ["a", "b", "c"]
    assert [t.id for t in async_result] == ["a", "b", "c"]
    assert [r.url.params.get("cursor") for r in server.requests] == [None, "c1"] * 2
    assert {r.url.params["limit"] for r in server.requests} == {"2"}


# ---- what submit accepts -----------------------------------------------------------------------


def double(value: int) -> int:
    return value * 2


@task(queue="math", priority=3, timeout_s=10, max_retries=2)
def triple(value: int) -> int:
    return value * 3


@task
def plain(value: int) -> int:
    return value


def submitted_body(invoke: Invoke) -> Any:
    server = Server().answer(201, task_json()).answer(201, task_json())
    call_both(server, invoke)
    bodies = [json.loads(r.content) for r in server.requests]
    assert bodies[0] == bodies[1]
    return bodies[0]


def test_submit_a_function_by_its_import_path() -> None:
    assert submitted_body(lambda c: c.submit(double, 2)) == {
        "handler": f"{__name__}:double",
        "args": [2],
    }


def test_submit_a_task_function_with_its_defaults_and_overrides() -> None:
    assert submitted_body(lambda c: c.submit(triple, 2, priority=9)) == {
        "handler": f"{__name__}:triple",
        "args": [2],
        "queue": "math",
        "priority": 9,
        "timeout_s": 10,
        "max_retries": 2,
    }


def test_a_task_function_is_still_a_function() -> None:
    assert isinstance(triple, TaskFunction)
    assert triple(2) == 6
    assert plain(4) == 4
    assert triple.__name__ == "triple"
    assert triple.handler == f"{__name__}:triple"
    spec = triple.spec(5, queue="other")
    assert (spec.handler, spec.args, spec.queue, spec.priority) == (triple.handler, [5], "other", 3)
    assert plain.spec(1) == TaskSpec(handler=f"{__name__}:plain", args=[1])


def test_task_options_are_checked_when_decorating() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        task(priority=10**9)
    assert caught.value.field == "priority"


def test_a_function_a_worker_cannot_import_is_refused_at_submit() -> None:
    def nested() -> None: ...

    server = Server()
    with Client(URL, transport=httpx.MockTransport(server)) as client:
        with pytest.raises(InvalidSpecError, match="module level") as caught:
            client.submit(nested)
        assert caught.value.field == "handler"
        with pytest.raises(InvalidSpecError, match="module level"):
            client.submit(task(nested))
    assert server.requests == []


def test_invalid_options_fail_before_any_request_naming_the_field() -> None:
    server = Server()
    with Client(URL, transport=httpx.MockTransport(server)) as client:
        with pytest.raises(InvalidSpecError) as caught:
            client.submit("echo", queue="no spaces allowed")
        assert caught.value.field == "queue"
        with pytest.raises(InvalidSpecError) as caught:
            client.submit("echo", colour="red")  # type: ignore[call-arg]
        assert caught.value.field == "colour"
        with pytest.raises(InvalidSpecError) as caught:
            client.submit(TaskSpec(handler="echo"), 1)
        assert caught.value.field == "args"
        with pytest.raises(InvalidSpecError, match="split"):
            client.submit_batch([TaskSpec(handler="echo")] * (MAX_BATCH + 1))
    assert server.requests == []


def test_a_spec_with_options_overrides_its_fields() -> None:
    body = submitted_body(lambda c: c.submit(TaskSpec(handler="echo", priority=1), priority=2))
    assert body == {"handler": "echo", "priority": 2}


def test_spec_options_list_every_taskspec_field_but_handler_and_args() -> None:
    assert set(SpecOptions.__annotations__) == set(TaskSpec.model_fields) - {"handler", "args"}


def test_the_public_api_is_curated() -> None:
    assert sorted(conveyor.client.__all__) == [
        "AsyncClient",
        "Client",
        "SpecOptions",
        "TaskFunction",
        "WorkerConnection",
        "task",
    ]


def test_sync_and_async_clients_have_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")}

    assert public(Client) == public(AsyncClient)
    for name in public(Client) - {"url"}:
        sync_params = inspect.signature(getattr(Client, name)).parameters
        async_params = inspect.signature(getattr(AsyncClient, name)).parameters
        assert list(sync_params) == list(async_params), name


# ---- the worker's connection ---------------------------------------------------------------------


def test_worker_connection_requests() -> None:
    server = Server()
    server.answer(201, {"id": "w1", "heartbeat_interval_s": 5, "lease_s": 30})
    server.answer(200, {"stop": ["t9"], "drain": False, "lease_s": 30})
    server.answer(200, {"waited_s": 0.5, "lease_s": 30, "tasks": [{
        "task_id": "t1", "token": 1, "handler": "echo", "args": [1], "kwargs": {},
        "timeout_s": None, "lease_expires_at": NOW, "name": None, "queue": "default",
        "resources": {},
    }]})  # fmt: skip
    server.answer(200, {"acks": [{"task_id": "t1", "accepted": True, "state": "succeeded",
                                  "detail": ""}]})  # fmt: skip
    server.answer(204)
    from conveyor.api.schemas import RegisterIn

    with WorkerConnection(URL, token="tk", transport=httpx.MockTransport(server)) as conn:
        registered = conn.register(RegisterIn(name="w", host="h", pid=1, concurrency=2))
        beat = conn.heartbeat("w1", [("t1", 1)], {"cpu_percent": 5.0})
        leased = conn.lease("w1", 3, wait_s=90, queues=["a"], free={"gpu": 1})
        acks = conn.report(
            "w1", [ReportIn(task_id="t1", token=1, outcome=Outcome.SUCCEEDED, result=2)]
        )
        conn.deregister("w1")
    assert (registered.id, beat.stop, leased.tasks[0].task_id, acks[0].accepted) == (
        "w1",
        ["t9"],
        "t1",
        True,
    )
    sent = [(r.method, r.url.path, json.loads(r.content or b"null")) for r in server.requests]
    assert sent == [
        ("POST", f"{API_PREFIX}/workers", {"name": "w", "host": "h", "pid": 1, "concurrency": 2}),
        ("POST", f"{API_PREFIX}/workers/w1/heartbeat",
         {"running": [{"task_id": "t1", "token": 1}], "metrics": {"cpu_percent": 5.0}}),
        ("POST", f"{API_PREFIX}/workers/w1/lease",
         {"max": 3, "wait_s": 60.0, "queues": ["a"], "free": {"gpu": 1.0}}),
        ("POST", f"{API_PREFIX}/workers/w1/report",
         {"reports": [{"task_id": "t1", "token": 1, "outcome": "succeeded", "result": 2}]}),
        ("DELETE", f"{API_PREFIX}/workers/w1", None),
    ]  # fmt: skip
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer tk"}
    assert server.requests[2].extensions["timeout"]["read"] > 60


def test_a_report_batch_refused_whole_is_a_stale_token_error() -> None:
    server = Server().answer(409, {"acks": [
        {"task_id": "t1", "accepted": False, "state": "queued", "detail": "token 1 is stale"},
    ]})  # fmt: skip
    with (
        WorkerConnection(URL, transport=httpx.MockTransport(server)) as conn,
        pytest.raises(StaleTokenError, match="token 1 is stale"),
    ):
        conn.report("w1", [ReportIn(task_id="t1", token=1, outcome=Outcome.FAILED)])


def test_a_dead_worker_heartbeat_is_a_plain_conflict() -> None:
    server = Server().answer(409, {"detail": "worker w1 is dead; register again"})
    with (
        WorkerConnection(URL, transport=httpx.MockTransport(server)) as conn,
        pytest.raises(ConflictError) as caught,
    ):
        conn.heartbeat("w1", [])
    assert type(caught.value) is ConflictError
