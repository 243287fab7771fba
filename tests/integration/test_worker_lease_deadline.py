"""A prefetched task starts only while its lease surely runs.

The worker runs for real (threads, child processes) against a scripted server
(httpx.MockTransport) that leases two tasks at once to a one-slot worker: the first runs for
a while, the second waits for the slot. Whether the second may start then depends on what
the worker knows of its lease: the lease answer's `lease_s` and `waited_s`, and the
heartbeats the server answered meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from conveyor.core.states import Outcome
from conveyor.worker import Worker, WorkerConfig
from conveyor.worker.worker import LAPSED_ERROR

pytestmark = pytest.mark.slow

URL = "http://conveyor.test"
NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
DONE_S = 15.0
LEASE_S = 1.0
FIRST_RUNS_S = 1.6
"""Longer than the lease: the second task's slot frees after its lease has run out."""


def task(task_id: str, handler: str, *args: Any) -> dict[str, Any]:
    return {
        "task_id": task_id, "token": 1, "handler": handler, "args": list(args), "kwargs": {},
        "timeout_s": None, "lease_expires_at": NOW, "name": None, "queue": "default",
        "resources": {},
    }  # fmt: skip


class ScriptedServer:
    """Leases `first_lease` once (after `hold_s`, saying it waited that long), then nothing;
    answers heartbeats if `heartbeats_answered`, else 503; records every report."""

    def __init__(
        self,
        first_lease: list[dict[str, Any]],
        *,
        heartbeats_answered: bool,
        hold_s: float = 0.0,
    ) -> None:
        self.first_lease = first_lease
        self.heartbeats_answered = heartbeats_answered
        self.hold_s = hold_s
        self.reports: dict[str, dict[str, Any]] = {}
        self.all_reported = threading.Event()
        self.heartbeats = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.read() or b"{}")
        if path.endswith("/workers"):
            return httpx.Response(
                201, json={"id": "w1", "heartbeat_interval_s": 0.1, "lease_s": LEASE_S}
            )
        if path.endswith("/heartbeat"):
            with self._lock:
                self.heartbeats += 1
            if not self.heartbeats_answered:
                return httpx.Response(503, json={"detail": "the database is unreachable"})
            return httpx.Response(200, json={"stop": [], "drain": False, "lease_s": LEASE_S})
        if path.endswith("/lease"):
            with self._lock:
                tasks, self.first_lease = self.first_lease, []
            if tasks:
                time.sleep(self.hold_s)  # a long-poll that waited for its tasks
            else:
                time.sleep(0.05)
            return httpx.Response(
                200, json={"tasks": tasks, "waited_s": self.hold_s, "lease_s": LEASE_S}
            )
        if path.endswith("/report"):
            with self._lock:
                for r in body["reports"]:
                    self.reports[r["task_id"]] = r
                if len(self.reports) == 2:
                    self.all_reported.set()
            acks = [
                {"task_id": r["task_id"], "accepted": True, "state": None, "detail": ""}
                for r in body["reports"]
            ]
            return httpx.Response(200, json={"acks": acks})
        return httpx.Response(204)


@pytest.fixture
def run_worker() -> Iterator[Any]:
    workers: list[tuple[Worker, threading.Thread]] = []

    def start(server: ScriptedServer) -> None:
        config = WorkerConfig(
            server_url=URL, concurrency=1, prefetch=1, lease_wait_s=1.0, grace_s=0.5,
            http_timeout_s=2.0, shutdown_flush_s=2.0,
            prefetch_hold_s=60.0,  # the second task waits its lease out, not the hold
        )  # fmt: skip
        worker = Worker(config, transport=httpx.MockTransport(server))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        workers.append((worker, thread))

    yield start
    for worker, thread in workers:
        worker.stop("the test is over")
        thread.join(DONE_S)
        assert not thread.is_alive(), "the worker did not exit"


def test_a_prefetched_task_whose_lease_ran_out_unheard_is_handed_back_unstarted(
    run_worker: Any,
) -> None:
    server = ScriptedServer(
        [task("first", "sleep", FIRST_RUNS_S), task("second", "echo", 2)],
        heartbeats_answered=False,
    )
    run_worker(server)
    assert server.all_reported.wait(DONE_S)
    assert server.heartbeats > 0
    assert server.reports["first"]["outcome"] == Outcome.SUCCEEDED.value
    second = server.reports["second"]
    assert (second["outcome"], second["error"]) == (Outcome.HANDED_BACK.value, LAPSED_ERROR)


def test_heartbeats_the_server_answered_keep_a_prefetched_task_startable(
    run_worker: Any,
) -> None:
    server = ScriptedServer(
        [task("first", "sleep", FIRST_RUNS_S), task("second", "echo", 2)],
        heartbeats_answered=True,
    )
    run_worker(server)
    assert server.all_reported.wait(DONE_S)
    second = server.reports["second"]
    assert (second["outcome"], second["result"]) == (Outcome.SUCCEEDED.value, 2)


def test_a_lease_that_waited_on_the_server_counts_from_its_grant_not_from_the_request(
    run_worker: Any,
) -> None:
    # The poll waited longer than the lease lasts: counted from the request, the lease would
    # look over on arrival; counted from the grant (request + waited_s) it has time to run.
    server = ScriptedServer(
        [task("first", "echo", 1), task("second", "echo", 2)],
        heartbeats_answered=False,
        hold_s=LEASE_S * 1.2,
    )
    run_worker(server)
    assert server.all_reported.wait(DONE_S)
    assert {r["task_id"]: r["outcome"] for r in server.reports.values()} == {
        "first": Outcome.SUCCEEDED.value,
        "second": Outcome.SUCCEEDED.value,
    }
