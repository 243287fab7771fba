"""The persistent connection: every operation answers over it as it does over REST (same results,
same errors), calls are pipelined and answered as they finish, a broken connection fails only
the calls in flight on it, and its checks (tokens, roles, a worker's secret, the body limit) are
REST's."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.api.operations import OPERATIONS
from conveyor.api.schemas import RegisterIn
from conveyor.client import AsyncClient, Client
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.spec import TaskSpec
from conveyor.errors import (
    ConflictError,
    ConveyorError,
    InvalidSpecError,
    NotFoundError,
    ServerUnavailableError,
)
from conveyor.server import ServerSettings
from conveyor.server.auth import Tokens, parse_tokens_variable
from tests.helpers.live_server import LiveServer

CLIENT = "client-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "stream.db").start()
    yield live
    live.stop()


def _outcome(call: Callable[[], Any]) -> Any:
    """What a call gave, comparable across transports: the answer's kind and stable fields, or
    the error's kind, field and message."""
    try:
        answer = call()
    except ConveyorError as exc:
        return type(exc).__name__, getattr(exc, "field", None), _IDS.sub("ID", str(exc))
    if answer is None:
        return None
    if isinstance(answer, list):
        return [_stable(item) for item in answer]
    return _stable(answer)


_IDS = re.compile(r"[0-9a-f]{32}")
_VOLATILE = {"id", "created_at", "updated_at", "started_at", "finished_at", "seq", "next_cursor",
             "depends_on", "tasks", "last_seen_at", "registered_at", "next_run_at", "server",
             "server_history", "worker_history", "points", "metrics", "finished_last_minute",
             "workers", "counts", "queues", "workers_alive", "workers_total", "scanned", "dependents",
             "root", "nodes", "edges", "worker_id", "lease_expires_at", "secret", "waited_s",
             "paused_at", "pause", "filter"}  # fmt: skip


def _stable(model: Any) -> Any:
    if not hasattr(model, "model_dump"):
        return model
    data = model.model_dump(mode="json")
    return type(model).__name__, {k: v for k, v in data.items() if k not in _VOLATILE}


def _steps(client: Client, worker: WorkerConnection) -> list[tuple[str, Callable[[], Any]]]:
    """One call of every operation (and a few errors), in an order that makes sense."""
    first = client.submit("echo", 1, name="first", labels={"team": "a"})
    later = client.submit("echo", 2, depends_on=[first.id])
    me = worker.register(RegisterIn(name="w", host="h", pid=1, concurrency=1))
    return [
        ("submit", lambda: client.submit("echo", 3, priority=5)),
        ("submit", lambda: client.submit("echo", depends_on=["missing"])),  # 422
        ("submit_batch", lambda: client.submit_batch([TaskSpec(handler="echo", name="b")])),
        ("list_tasks", lambda: client.list(labels={"team": "a"}).tasks),
        ("get_task", lambda: client.get(first.id)),
        ("get_task", lambda: client.get("no-such-task")),  # 404
        ("get_result", lambda: client.result(later.id)),
        ("why_task", lambda: [r.message for r in client.why(later.id).reasons]),
        ("why_task", lambda: client.why("no-such-task")),  # 404
        ("wait_results", lambda: client.wait([first.id, later.id], timeout_s=0)),
        ("wait_results", lambda: client.wait([first.id, "no-such-task"], timeout_s=0)),  # 404
        ("lease", lambda: worker.lease(me.id, 1)),
        ("heartbeat", lambda: worker.heartbeat(me.id, [])),
        ("report", lambda: worker.report(me.id, [_stale_report()])),  # 409: all refused
        ("cancel_task", lambda: client.cancel(later.id)),
        ("cancel_task", lambda: client.cancel(later.id)),  # 409: cancelled already
        ("retry_task", lambda: client.retry(later.id)),
        ("delete_task", lambda: client.delete(later.id)),  # 204
        ("bulk_action", lambda: client.retry_all(ids=[first.id], dry_run=True)),
        ("bulk_action", lambda: client.cancel_all()),  # 422: no criterion
        ("get_bulk", lambda: client.wait_bulk(client.delete_all(name="b"), timeout_s=10).changed),
        ("get_bulk", lambda: client.bulk("no-such-action")),  # 404
        ("list_failures", lambda: client._session.send(_view("list_failures"))),
        ("add_schedule", lambda: client.add_schedule("nightly", "0 3 * * *", TaskSpec(handler="echo"))),
        ("add_schedule", lambda: client.add_schedule("nightly", "0 3 * * *", TaskSpec(handler="echo"))),  # 409
        ("list_schedules", lambda: client.schedules()),
        ("get_schedule", lambda: client._session.send(_get_schedule("nightly"))),
        ("pause_schedule", lambda: client.pause_schedule("nightly")),
        ("pause_schedule", lambda: client.pause_schedule("missing")),  # 404
        ("resume_schedule", lambda: client.resume_schedule("nightly")),
        ("remove_schedule", lambda: client.remove_schedule("nightly")),
        ("pause_queue", lambda: client.pause_queue("held")),
        ("pause_queue", lambda: client.pause_queue("held", until=datetime(2020, 1, 1, tzinfo=UTC))),  # 422
        ("list_pauses", lambda: client.pauses()),
        ("resume_queue", lambda: client.resume_queue("held")),
        ("resume_queue", lambda: client.resume_queue("held")),  # not paused
        ("pause_all", lambda: client.pause_all()),
        ("resume_all", lambda: client.resume_all()),
        ("set_limit", lambda: client.set_limit("db", concurrency=2)),
        ("set_limit", lambda: client._session.send(_put_limit("db", {"rate": -1}))),  # 422
        ("list_limits", lambda: client.limits()),
        ("get_limit", lambda: client.limit("db")),
        ("delete_limit", lambda: client.delete_limit("db")),  # 204
        ("get_limit", lambda: client.limit("db")),  # 404
        ("delete_limit", lambda: client.delete_limit("db")),  # 404
        ("drain_workers", lambda: client.drain_workers()),  # 422
        ("stop_workers", lambda: client.stop_workers(["no-such-worker"])),  # 404
        ("drain_workers", lambda: [w.name for w in client.drain_workers(queue="default")]),
        ("list_workers", lambda: [w.name for w in client.workers()]),
        ("get_worker", lambda: client.worker(me.id).name),
        ("status", lambda: client.status()),
        ("status_history", lambda: client._session.send(_view("status_history"))),
        ("monitor", lambda: client.monitor()),
        ("health", lambda: client.health()),
        ("search_tasks", lambda: client._session.send(_view("search_tasks", text="first"))),
        ("task_graph", lambda: client._session.send(_view("task_graph", task_id=first.id))),
        ("list_workflows", lambda: client._session.send(_view("list_workflows"))),
        ("get_workflow", lambda: client._session.send(_view("get_workflow", task_id=first.id))),
        ("register_worker", lambda: worker.register(RegisterIn(name="w2", host="h", pid=2, concurrency=1))),
        ("deregister_worker", lambda: worker.deregister(me.id)),
    ]  # fmt: skip


def _stale_report() -> Any:
    from conveyor.api.schemas import ReportIn
    from conveyor.core.states import Outcome

    return ReportIn(task_id="no-such-task", token=1, outcome=Outcome.SUCCEEDED)


def _get_schedule(name: str) -> Any:
    from conveyor.api.params import ScheduleRef
    from conveyor.api.schedules import ScheduleOut
    from conveyor.client.calls import Call

    return Call(OPERATIONS["get_schedule"], ScheduleOut.model_validate_json, ScheduleRef(name=name))


def _put_limit(name: str, body: dict[str, Any]) -> Any:
    """A limit the server refuses (the client checks its own first, as it should)."""
    from conveyor.api.limits import LimitIn, LimitOut, LimitRef
    from conveyor.client.calls import Call

    op = OPERATIONS["set_limit"]
    return Call(
        op, LimitOut.model_validate_json, LimitRef(limit=name), LimitIn.model_construct(**body)
    )


def _view(name: str, **params: Any) -> Any:
    from conveyor.client.calls import Call

    op = OPERATIONS[name]
    assert op.answer is not None
    return Call(op, op.answer.model_validate_json, op.params.model_validate(params))


def test_every_operation_answers_the_same_over_rest_and_the_stream(tmp_path: Path) -> None:
    outcomes: dict[str, list[Any]] = {}
    for connection in ("rest", "stream"):
        live = LiveServer(tmp_path / f"{connection}.db").start()
        try:
            with (
                Client(live.url, connection=connection) as client,  # type: ignore[arg-type]
                WorkerConnection(live.url, connection=connection) as worker,  # type: ignore[arg-type]
            ):
                steps = _steps(client, worker)
                outcomes[connection] = [_outcome(call) for _, call in steps]
        finally:
            live.stop()
    assert {name for name, _ in steps} == set(OPERATIONS), "every operation is exercised"
    for (name, _), rest, stream in zip(steps, outcomes["rest"], outcomes["stream"], strict=True):
        assert stream == rest, name
    kinds = {o[0] for o in outcomes["stream"] if isinstance(o, tuple) and len(o) == 3}
    assert {"InvalidSpecError", "NotFoundError", "ConflictError"} <= kinds


def test_calls_are_pipelined_and_answered_as_they_finish(server: LiveServer) -> None:
    """A long poll on the connection holds up nothing else: submits sent after it are answered
    while it waits."""

    async def main() -> tuple[float, float, bool]:
        async with AsyncClient(server.url, connection="stream") as client:
            stuck = await client.submit("echo", queue="nobody-serves-this")
            started = time.monotonic()
            waiting = asyncio.ensure_future(client.result(stuck.id, wait_s=3))
            await asyncio.sleep(0.05)  # the wait is on the server now
            submitted = await asyncio.gather(*(client.submit("echo", i) for i in range(20)))
            submits_done = time.monotonic() - started
            answer = await waiting
            return (
                submits_done,
                time.monotonic() - started,
                len(submitted) == 20 and not answer.done,
            )

    submits_done, wait_done, ok = asyncio.run(main())
    assert ok
    assert submits_done < 2.5 <= wait_done, (submits_done, wait_done)


def test_a_broken_connection_fails_only_its_calls_and_the_next_call_reconnects(
    server: LiveServer,
) -> None:
    with Client(server.url, connection="stream", timeout_s=5) as client:
        stuck = client.submit("echo", queue="nobody-serves-this")
        failed: list[BaseException] = []

        def wait() -> None:
            try:
                client.result(stuck.id, wait_s=30)
            except BaseException as exc:
                failed.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)  # the wait is on the server now
        server.stop()
        waiter.join(10)
        assert not waiter.is_alive()
        assert failed and isinstance(failed[0], ServerUnavailableError)
        server.start()
        assert client.get(stuck.id).id == stuck.id, "a new connection, the same server state"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    tokens = Tokens(parse_tokens_variable(f"client:{CLIENT},worker:{WORKER}", "test"))
    live = LiveServer(
        tmp_path / "guarded.db",
        server_settings=ServerSettings(timer_interval_s=0.1, tokens=tokens, max_body_bytes=50_000),
    ).start()
    yield live
    live.stop()


def test_the_stream_checks_what_rest_checks(guarded: LiveServer) -> None:
    for connection in ("rest", "stream"):
        with (
            Client(guarded.url, connection=connection) as anonymous,  # type: ignore[arg-type]
            pytest.raises(ConveyorError, match="HTTP 401"),
        ):
            anonymous.status()
        with Client(guarded.url, token=CLIENT, connection=connection) as client:  # type: ignore[arg-type]
            task = client.submit("echo", 1)
            with pytest.raises(InvalidSpecError, match="too large"):
                client.submit("echo", "x" * 60_000)
            with pytest.raises(ConveyorError, match="HTTP 403"):
                client.deregister_worker("someone")  # a client may not
        with (
            WorkerConnection(guarded.url, token=WORKER, connection=connection) as victim,  # type: ignore[arg-type]
            WorkerConnection(guarded.url, token=WORKER, connection=connection) as forger,  # type: ignore[arg-type]
        ):
            me = victim.register(RegisterIn(name="victim", host="h", pid=1, concurrency=1))
            [lease] = victim.lease(me.id, 1).tasks
            assert lease.task_id == task.id
            from conveyor.api.schemas import ReportIn

            forged = ReportIn(task_id=task.id, token=lease.token, outcome="succeeded")  # type: ignore[arg-type]
            with pytest.raises(ConveyorError, match="secret"):
                forger.report(me.id, [forged])  # the forger never registered as `me`
            assert victim.report(me.id, [forged])[0].accepted


def test_errors_have_the_same_types_on_both(server: LiveServer) -> None:
    for connection in ("rest", "stream"):
        with Client(server.url, connection=connection) as client:  # type: ignore[arg-type]
            with pytest.raises(NotFoundError):
                client.get("nope")
            task = client.submit("echo", 1)
            client.cancel(task.id)
            with pytest.raises(ConflictError):
                client.cancel(task.id)


@pytest.mark.parametrize("connection", ["rest", "stream"])
def test_a_bulk_wait_returns_every_result_in_order_once_all_have_ended(
    server: LiveServer, connection: str
) -> None:
    """1,500 tasks: two calls' worth. They end (cancelled, from another thread) while the wait
    holds; the answer has them all, in the order asked, and came in a handful of calls."""
    with Client(server.url, connection=connection) as client:  # type: ignore[arg-type]
        ids = [t.id for t in client.submit_batch([TaskSpec(handler="echo", queue="idle")] * 1500)]
        assert not any(r.done for r in client.wait(ids, timeout_s=0.2))
        calls: list[str] = []
        send = client._session.send

        def counting(call: Any) -> Any:
            calls.append(call.op.name)
            return send(call)

        client._session.send = counting  # type: ignore[method-assign]

        def cancel_all() -> None:
            with Client(server.url) as other:
                for task_id in reversed(ids):
                    other.cancel(task_id)

        canceller = threading.Thread(target=cancel_all)
        canceller.start()
        results = client.wait(ids, timeout_s=60)
        canceller.join()
    assert [r.id for r in results] == ids
    assert all(r.done and r.state == "cancelled" for r in results)
    assert 2 <= len(calls) <= 10 and set(calls) == {"wait_results"}, calls


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_call(
    server: LiveServer,
) -> None:
    # Nobody reads an idle connection (the thread that waits for an answer reads it): the next
    # call must learn that the server closed it, and go on a new one instead of failing.
    with Client(server.url, connection="stream", timeout_s=5) as client:
        task = client.submit("echo", queue="nobody-serves-this")
        server.stop()
        server.start()
        for _ in range(3):
            assert client.get(task.id).id == task.id
