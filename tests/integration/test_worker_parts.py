"""The worker's threads one at a time, against a scripted server (httpx.MockTransport).

What a live server rarely does on cue: refuse a batch as malformed, answer 503, forget the
worker while two threads talk to it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from conveyor.api.schemas import AssignmentOut, RegisterIn, ReportIn
from conveyor.client import WorkerConnection
from conveyor.core.states import Outcome
from conveyor.worker.bookkeeping import Bookkeeping
from conveyor.worker.registration import Registration
from conveyor.worker.reporting import Reporter

URL = "http://conveyor.test"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
WAIT_S = 10.0


def assignment(task_id: str, token: int = 1, **resources: float) -> AssignmentOut:
    return AssignmentOut(
        task_id=task_id, token=token, handler="echo", args=[], kwargs={}, timeout_s=None,
        lease_expires_at=NOW, name=None, queue="default", resources=resources,
    )  # fmt: skip


def report(task_id: str, **fields: Any) -> ReportIn:
    return ReportIn(task_id=task_id, token=1, outcome=Outcome.SUCCEEDED, **fields)


def acks(body: dict[str, Any], accepted: bool = True) -> dict[str, Any]:
    return {
        "acks": [
            {"task_id": r["task_id"], "accepted": accepted, "state": None, "detail": ""}
            for r in body["reports"]
        ]
    }


class ScriptedServer:
    """Answers each request with `script(body)`, in a thread-safe way, and records bodies."""

    def __init__(self, script: Callable[[str, dict[str, Any]], httpx.Response]) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read() or b"{}")
        with self.lock:
            self.bodies.append(body)
            return self.script(request.url.path, body)


@pytest.fixture
def books() -> Bookkeeping:
    return Bookkeeping(4, {"gpu": 1.0})


@contextmanager
def reporting(books: Bookkeeping, server: ScriptedServer) -> Iterator[None]:
    """A Reporter thread for the duration of the block."""
    conn = WorkerConnection(URL, transport=httpx.MockTransport(server))
    registration = Registration(
        conn, RegisterIn(name="w", host="h", pid=1, concurrency=1), threading.Event()
    )
    registration.id = "w1"
    halt = threading.Event()
    reporter = Reporter(conn, registration, books, halt=halt)
    thread = threading.Thread(target=reporter.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        halt.set()
        books.close()
        thread.join(WAIT_S)
        conn.close()
    assert not thread.is_alive()


def finish(books: Bookkeeping, *reports: ReportIn) -> None:
    books.leased([assignment(r.task_id) for r in reports], start_by=math.inf, worker_id="w1")
    for r in reports:
        books.finished(r.task_id, r.token, r)


def test_a_malformed_report_is_found_and_replaced_by_a_plain_failure(books: Bookkeeping) -> None:
    big = "x" * 50

    def script(path: str, body: dict[str, Any]) -> httpx.Response:
        if any(r.get("result") == big for r in body["reports"]):
            loc = ["body", "reports", 0, "result"]
            return httpx.Response(422, json={"detail": [{"loc": loc, "msg": "too large"}]})
        return httpx.Response(200, json=acks(body))

    server = ScriptedServer(script)
    # Finished before the reporter starts: the three go out in one batch.
    finish(books, report("a"), report("b", result=big), report("c"))
    with reporting(books, server):
        assert books.wait_flushed(WAIT_S)

    sent = [[(r["task_id"], r["outcome"]) for r in body["reports"]] for body in server.bodies]
    assert sent == [
        [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")],  # refused as a whole
        [("a", "succeeded")],
        [("b", "succeeded")],  # refused alone: this is the one
        [("b", "failed")],  # replaced by a plain failure that says why
        [("c", "succeeded")],
    ]
    assert "too large" in server.bodies[3]["reports"][0]["error"]
    assert books.idle()


def test_reports_wait_out_a_busy_server_and_then_go_in_one_batch(books: Bookkeeping) -> None:
    answers = iter([503, 503, 200])

    def script(path: str, body: dict[str, Any]) -> httpx.Response:
        status = next(answers)
        if status == 503:
            return httpx.Response(503, json={"detail": "locked"}, headers={"Retry-After": "0"})
        return httpx.Response(200, json=acks(body))

    server = ScriptedServer(script)
    finish(books, report("a"), report("b"))
    with reporting(books, server):
        assert books.wait_flushed(WAIT_S)
    assert [len(body["reports"]) for body in server.bodies] == [2, 2, 2]
    assert books.idle()


def test_refused_reports_are_settled_not_retried(books: Bookkeeping) -> None:
    server = ScriptedServer(lambda path, body: httpx.Response(409, json=acks(body, False)))
    finish(books, report("a"))
    with reporting(books, server):
        assert books.wait_flushed(WAIT_S)
    assert len(server.bodies) == 1
    assert books.idle()


def test_room_and_resources_follow_leases(books: Bookkeeping) -> None:
    books.leased(
        [assignment("a", gpu=1.0), assignment("b"), assignment("c"), assignment("d")],
        start_by=math.inf,
        worker_id="w1",
    )
    assert books.free_resources() == {"gpu": 0.0}
    got_room = threading.Event()
    room: list[int] = []

    def lease_more() -> None:
        room.append(books.wait_for_room())
        got_room.set()

    threading.Thread(target=lease_more, daemon=True).start()
    assert not got_room.wait(0.05)  # full: the leaser sleeps instead of polling
    books.finished("a", 1, report("a"))
    assert got_room.wait(WAIT_S)
    assert room == [1]
    assert books.free_resources() == {"gpu": 1.0}
    assert books.held_leases() == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]  # a: not reported yet


def test_only_unfinished_tasks_are_stopped(books: Bookkeeping) -> None:
    books.leased([assignment("a"), assignment("b")], start_by=math.inf, worker_id="w1")
    books.finished("a", 1, report("a"))
    assert books.void([("a", 1), ("b", 1), ("unknown", 1)]) == [("b", 1)]
    assert (books.is_void("a", 1), books.is_void("b", 1)) == (False, True)
    assert books.void([("b", 1)]) == [], "already being stopped"
    assert books.held_leases() == [("a", 1)], "a void lease is not extended"
    books.finished("b", 1, None)  # dropped: its lease is gone, no report
    assert books.held_leases() == [("a", 1)]


def test_a_newer_lease_of_a_task_voids_the_older_one_and_only_it() -> None:
    books = Bookkeeping(2, {"gpu": 1.0})
    assert books.leased([assignment("a", gpu=1.0)], start_by=math.inf, worker_id="w1") == []
    # Leased again (token 2) while token 1's execution is still being killed: two leases of
    # one task are held, each with its own resources, and only the old one is void.
    stop = books.leased([assignment("a", 2, gpu=1.0)], start_by=math.inf, worker_id="w2")
    assert stop == [("a", 1)]
    assert (books.is_void("a", 1), books.is_void("a", 2)) == (True, False)
    assert books.held_leases() == [("a", 2)]
    assert books.free_resources() == {"gpu": -1.0}
    books.finished("a", 1, None)  # the old execution is gone: its slot and gpu are free
    assert books.free_resources() == {"gpu": 0.0}
    assert books.wait_for_room() == 1
    assert not books.is_void("a", 2)
    assert books.held_leases() == [("a", 2)]


def test_a_forgotten_registration_voids_its_leases_even_those_still_arriving() -> None:
    books = Bookkeeping(4, {})
    books.leased([assignment("a"), assignment("b")], start_by=math.inf, worker_id="w1")
    books.finished("a", 1, report("a"))  # ended: its report goes out and is answered
    assert books.forget("w1") == [("b", 1)]
    # A long-poll made under w1 answers after the server forgot w1: void on arrival.
    assert books.leased([assignment("c")], start_by=math.inf, worker_id="w1") == [("c", 1)]
    assert books.leased([assignment("d")], start_by=math.inf, worker_id="w2") == []
    assert books.held_leases() == [("a", 1), ("d", 1)]
    assert books.wait_for_room() == 1  # b, c and d occupy three of four until they end


def test_renewing_a_forgotten_registration_voids_it_first_and_once() -> None:
    events: list[str] = []

    def script(path: str, body: dict[str, Any]) -> httpx.Response:
        events.append("register")
        worker_id = f"w{events.count('register')}"
        return httpx.Response(201, json={"id": worker_id, "heartbeat_interval_s": 1, "lease_s": 10})

    conn = WorkerConnection(URL, transport=httpx.MockTransport(ScriptedServer(script)))
    registration = Registration(
        conn,
        RegisterIn(name="w", host="h", pid=1, concurrency=1),
        threading.Event(),
        on_forgotten=lambda worker_id: events.append(f"forget {worker_id}"),
    )
    assert registration.register()
    assert registration.renew("w1") and registration.renew("w1")  # the second finds w2
    assert events == ["register", "forget w1", "register"]
    assert registration.id == "w2"
    conn.close()


def test_threads_that_find_the_worker_forgotten_register_it_once() -> None:
    registered = []

    def script(path: str, body: dict[str, Any]) -> httpx.Response:
        registered.append(body)
        worker_id = f"w{len(registered)}"
        return httpx.Response(201, json={"id": worker_id, "heartbeat_interval_s": 1, "lease_s": 10})

    conn = WorkerConnection(URL, transport=httpx.MockTransport(ScriptedServer(script)))
    registration = Registration(
        conn, RegisterIn(name="w", host="h", pid=1, concurrency=1), threading.Event()
    )
    assert registration.register()
    stale = registration.id
    threads = [threading.Thread(target=registration.renew, args=(stale,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert (len(registered), registration.id) == (2, "w2")
    conn.close()
