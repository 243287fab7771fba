"""The worker side of the REST API: register, heartbeat, long-poll leases, reports, and timers.

Waits are awaited, never slept on: a long-poll is started as a task, the test learns from the
engine (a wrapped method signalling from its thread) that the request is waiting, then acts and
asserts that the answer comes promptly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest

from conveyor.api.schemas import API_PREFIX
from conveyor.engine import Engine, EngineSettings
from conveyor.server import ServerSettings, request_shutdown
from tests.integration.conftest import Served, Signal, serve

pytestmark = pytest.mark.anyio

PROMPT_S = 2.0
"""A woken long-poll answers well within this; its wait_s is several times longer."""


async def test_register_answers_with_the_engine_timings(served: Served) -> None:
    response = await served.post(
        "/workers",
        json={
            "name": "w1",
            "host": "h",
            "pid": 42,
            "concurrency": 2,
            "queues": ["a", "b"],
            "resources": {"gpu": 1},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["lease_s"] == served.engine.settings.lease_s
    assert body["heartbeat_interval_s"] == served.engine.settings.heartbeat_interval_s
    worker = (await served.get(f"/workers/{body['id']}")).json()
    assert worker["queues"] == ["a", "b"]
    assert worker["resources"] == {"gpu": 1}
    assert worker["state"] == "alive"


async def test_register_lease_report_result(served: Served) -> None:
    worker = await served.register()
    task = await served.submit(args=["abc"], timeout_s=5)
    [assignment] = await served.lease(worker, max=10)
    assert assignment["task_id"] == task["id"]
    assert assignment["token"] == 1
    assert assignment["args"] == ["abc"]
    assert assignment["timeout_s"] == 5

    listed = (await served.get("/workers")).json()["workers"]
    assert [(w["id"], w["running"]) for w in listed] == [(worker, [task["id"]])]
    assert (await served.get(f"/workers/{worker}")).json()["running"] == [task["id"]]
    assert (await served.get(f"/tasks/{task['id']}")).json()["state"] == "running"

    response = await served.post(
        f"/workers/{worker}/report",
        json={
            "reports": [
                {
                    "task_id": task["id"],
                    "token": 1,
                    "outcome": "succeeded",
                    "result": {"digest": "ba78"},
                    "stdout_tail": "hello\n",
                }
            ]
        },
    )
    assert response.status_code == 200
    assert response.json()["acks"] == [
        {"task_id": task["id"], "accepted": True, "state": "succeeded", "detail": ""}
    ]
    result = (await served.get(f"/tasks/{task['id']}/result")).json()
    assert result["done"] is True
    assert result["state"] == "succeeded"
    assert result["result"] == {"digest": "ba78"}
    [attempt] = (await served.get(f"/tasks/{task['id']}")).json()["attempt_log"]
    assert attempt["worker_id"] == worker
    assert attempt["outcome"] == "succeeded"
    assert attempt["stdout_tail"] == "hello\n"
    assert (await served.get(f"/workers/{worker}")).json()["running"] == []


async def test_a_stale_report_is_409_and_changes_nothing(served: Served) -> None:
    first = await served.register(name="first")
    second = await served.register(name="second")
    task = await served.submit()
    [lease1] = await served.lease(first)
    # The first worker is deregistered as stopped: its task goes back to the queue at once, and
    # to the second one.
    assert (await served.delete(f"/workers/{first}?stopped=true")).status_code == 204
    [lease2] = await served.lease(second)
    assert lease2["token"] == lease1["token"] + 1

    before = (await served.get(f"/tasks/{task['id']}")).json()

    stale = await served.post(
        f"/workers/{first}/report",
        json={"reports": [{"task_id": task["id"], "token": lease1["token"], "outcome": "failed"}]},
    )
    assert stale.status_code == 409
    [ack] = stale.json()["acks"]
    assert ack["accepted"] is False
    assert ack["state"] == "running"
    assert "stale" in ack["detail"]
    after = (await served.get(f"/tasks/{task['id']}")).json()
    assert after == before
    assert after["state"] == "running"
    assert after["worker_id"] == second


async def test_a_second_report_of_a_recorded_result_is_409_and_the_result_stays(
    served: Served,
) -> None:
    worker = await served.register()
    task = await served.submit()
    [lease] = await served.lease(worker)
    report = {"task_id": task["id"], "token": lease["token"], "outcome": "succeeded", "result": 1}
    assert (
        await served.post(f"/workers/{worker}/report", json={"reports": [report]})
    ).status_code == 200
    again = await served.post(
        f"/workers/{worker}/report", json={"reports": [{**report, "result": 2}]}
    )
    assert again.status_code == 409
    assert (await served.get(f"/tasks/{task['id']}/result")).json()["result"] == 1


async def test_a_batch_with_one_accepted_report_is_200(served: Served) -> None:
    worker = await served.register()
    task = await served.submit()
    [lease] = await served.lease(worker)
    response = await served.post(
        f"/workers/{worker}/report",
        json={
            "reports": [
                {"task_id": task["id"], "token": lease["token"], "outcome": "succeeded"},
                {"task_id": "no-such-task", "token": 1, "outcome": "succeeded"},
            ]
        },
    )
    assert response.status_code == 200
    assert [a["accepted"] for a in response.json()["acks"]] == [True, False]


async def test_heartbeat_extends_held_leases_and_asks_to_stop_cancelled_ones(
    served: Served,
) -> None:
    worker = await served.register()
    keep = await served.submit(priority=2)
    stop = await served.submit(priority=1)
    leases = await served.lease(worker, max=2)
    assert [a["task_id"] for a in leases] == [keep["id"], stop["id"]]
    await served.post(f"/tasks/{stop['id']}/cancel")
    response = await served.post(
        f"/workers/{worker}/heartbeat",
        json={
            "running": [{"task_id": a["task_id"], "token": a["token"]} for a in leases],
            "metrics": {"load": 0.5},
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "stop": [stop["id"]],
        "drain": False,
        "hand_back": False,
        "lease_s": served.engine.settings.lease_s,
    }
    assert (await served.get(f"/workers/{worker}")).json()["metrics"] == {"load": 0.5}


async def test_heartbeat_of_an_unknown_worker_is_404_and_of_a_gone_one_409(
    served: Served,
) -> None:
    unknown = await served.post("/workers/nobody/heartbeat", json={})
    assert unknown.status_code == 404
    worker = await served.register()
    await served.delete(f"/workers/{worker}")
    gone = await served.post(f"/workers/{worker}/heartbeat", json={})
    assert gone.status_code == 409
    assert "register again" in gone.json()["detail"]
    assert (await served.post(f"/workers/{worker}/lease", json={})).status_code == 409


async def test_deregistering_a_worker_requeues_its_tasks_without_spending_a_retry(
    served: Served,
) -> None:
    worker = await served.register()
    task = await served.submit(max_retries=0)
    await served.lease(worker)
    assert (await served.delete(f"/workers/{worker}?stopped=true")).status_code == 204
    after = (await served.get(f"/tasks/{task['id']}")).json()
    assert after["state"] == "queued"
    assert after["retries_used"] == 0
    # Gone from the API (the engine keeps the row, state gone): read, listed, deleted again.
    assert (await served.get(f"/workers/{worker}")).status_code == 404
    listed = (await served.get("/workers")).json()["workers"]
    assert worker not in [w["id"] for w in listed]
    assert (await served.delete(f"/workers/{worker}")).status_code == 404
    assert served.engine.worker(worker).state.value == "gone"
    assert (await served.delete("/workers/nobody")).status_code == 404


async def test_deregistering_a_worker_not_known_to_be_stopped_keeps_its_leases_to_their_end(
    served: Served,
) -> None:
    worker = await served.register(name="removed")
    other = await served.register(name="other")
    task = await served.submit()
    await served.lease(worker)

    assert (await served.delete(f"/workers/{worker}")).status_code == 204

    # It may not know yet, and start or finish the task: nobody else runs it meanwhile.
    assert (await served.get(f"/tasks/{task['id']}")).json()["state"] == "running"
    assert await served.lease(other) == []
    assert (await served.get(f"/workers/{worker}")).status_code == 404


async def test_long_poll_lease_answers_as_soon_as_a_task_is_submitted(served: Served) -> None:
    worker = await served.register()
    first_try = Signal(served.engine.lease, when=lambda leased: leased == [])
    served.engine.lease = first_try  # type: ignore[method-assign]

    started = time.monotonic()
    waiting = asyncio.create_task(served.lease(worker, wait_s=30))
    await first_try.wait()  # the request found nothing and is now waiting
    task = await served.submit()
    leased = await asyncio.wait_for(waiting, PROMPT_S)
    assert [a["task_id"] for a in leased] == [task["id"]]
    assert time.monotonic() - started < PROMPT_S


async def test_long_poll_on_named_queues_ignores_other_queues_and_wakes_for_its_own(
    served: Served,
) -> None:
    worker = await served.register(queues=["default", "gpu"])
    first_try = Signal(served.engine.lease, when=lambda leased: leased == [])
    served.engine.lease = first_try  # type: ignore[method-assign]

    waiting = asyncio.create_task(served.lease(worker, wait_s=30, queues=["gpu"]))
    await first_try.wait()
    await served.submit(queue="default")  # not a queue the request asked for
    gpu_task = await served.submit(queue="gpu")
    leased = await asyncio.wait_for(waiting, PROMPT_S)
    assert [a["task_id"] for a in leased] == [gpu_task["id"]]


async def test_long_poll_wakes_for_a_task_the_timers_release(served: Served) -> None:
    worker = await served.register()
    task = await served.submit(delay_s=0.3)
    started = time.monotonic()
    leased = await asyncio.wait_for(served.lease(worker, wait_s=30), 5)
    elapsed = time.monotonic() - started
    assert [a["task_id"] for a in leased] == [task["id"]]
    assert 0.2 < elapsed < PROMPT_S


async def test_the_lease_answer_says_how_long_the_poll_waited_and_the_lease_runs(
    served: Served,
) -> None:
    # A worker counts its lease from when it asked, plus the wait: the lease began later.
    worker = await served.register()
    await served.submit()
    at_once = await served.post(f"/workers/{worker}/lease", json={"wait_s": 30})
    await served.submit(delay_s=0.3)
    started = time.monotonic()
    later = await served.post(f"/workers/{worker}/lease", json={"wait_s": 30})
    elapsed = time.monotonic() - started

    lease_s = served.engine.settings.lease_s
    assert (len(at_once.json()["tasks"]), at_once.json()["lease_s"]) == (1, lease_s)
    assert at_once.json()["waited_s"] < 0.2
    assert (len(later.json()["tasks"]), later.json()["lease_s"]) == (1, lease_s)
    assert 0.2 < later.json()["waited_s"] <= elapsed


async def test_long_poll_returns_an_empty_list_at_the_deadline(served: Served) -> None:
    worker = await served.register()
    started = time.monotonic()
    assert await served.lease(worker, wait_s=0.3) == []
    assert time.monotonic() - started >= 0.3


async def test_stopping_the_server_answers_waiting_long_polls_at_once(served: Served) -> None:
    worker = await served.register()
    first_try = Signal(served.engine.lease, when=lambda leased: leased == [])
    served.engine.lease = first_try  # type: ignore[method-assign]
    waiting = asyncio.create_task(served.lease(worker, wait_s=30))
    await first_try.wait()
    request_shutdown(served.app)
    assert await asyncio.wait_for(waiting, PROMPT_S) == []


async def test_result_wait_answers_as_soon_as_the_task_finishes(served: Served) -> None:
    worker = await served.register()
    task = await served.submit()
    first_read = Signal(served.engine.get, when=lambda t: not t.state.is_terminal)
    served.engine.get = first_read  # type: ignore[method-assign]

    started = time.monotonic()
    waiting = asyncio.create_task(served.get(f"/tasks/{task['id']}/result", params={"wait": 30}))
    await first_read.wait()  # read once, not finished: now waiting
    [lease] = await served.lease(worker)
    await served.post(
        f"/workers/{worker}/report",
        json={
            "reports": [
                {
                    "task_id": task["id"],
                    "token": lease["token"],
                    "outcome": "succeeded",
                    "result": 7,
                }
            ]
        },
    )
    response = await asyncio.wait_for(waiting, PROMPT_S)
    assert response.status_code == 200
    assert response.json()["done"] is True
    assert response.json()["result"] == 7
    assert time.monotonic() - started < PROMPT_S


async def test_result_wait_times_out_with_done_false(served: Served) -> None:
    task = await served.submit()
    started = time.monotonic()
    response = await served.get(f"/tasks/{task['id']}/result", params={"wait": 0.3})
    assert response.json()["done"] is False
    assert response.json()["state"] == "queued"
    assert time.monotonic() - started >= 0.3


def _documented_route_only(served: Served) -> httpx.AsyncClient:
    """A client for the app's FastAPI routes, past the middleware (and so past the fast lane)."""
    app = served.app

    async def routes(scope: Any, receive: Any, send: Any) -> None:
        # What the middleware stack would have put in the scope on the way.
        scope["app"] = app
        async with AsyncExitStack() as stack:
            scope["fastapi_middleware_astack"] = stack
            await app.router(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=routes), base_url="http://x")


@pytest.mark.parametrize("lane", ["fast lane", "documented route"])
async def test_submit_with_wait_answers_with_the_finished_task(served: Served, lane: str) -> None:
    worker = await served.register()
    submits = Signal(served.engine.submit)
    served.engine.submit = submits  # type: ignore[method-assign]
    http = served.http if lane == "fast lane" else _documented_route_only(served)
    submitting = asyncio.create_task(
        http.post(
            f"{API_PREFIX}/tasks",
            params={"wait": 30},
            json={"handler": "sha256", "args": ["x"], "name": lane.replace(" ", "-")},
        )
    )
    await submits.wait()  # stored; the request now waits for the end (or, if it has not
    # registered its wait by the time the task ends, reads the task once it has)
    [lease] = await served.lease(worker)
    assert not submitting.done()
    report = {"task_id": lease["task_id"], "token": lease["token"], "outcome": "succeeded"}
    await served.post(f"/workers/{worker}/report", json={"reports": [{**report, "result": 7}]})
    response = await asyncio.wait_for(submitting, PROMPT_S)
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["state"], body["result"]) == (lane.replace(" ", "-"), "succeeded", 7)


@pytest.mark.parametrize("lane", ["fast lane", "documented route"])
async def test_submit_with_wait_times_out_with_the_task_as_it_is(served: Served, lane: str) -> None:
    http = served.http if lane == "fast lane" else _documented_route_only(served)
    started = time.monotonic()
    response = await http.post(
        f"{API_PREFIX}/tasks", params={"wait": 0.3}, json={"handler": "sha256"}
    )
    assert response.status_code == 201
    assert response.json()["state"] == "queued"
    assert time.monotonic() - started >= 0.3
    if lane == "documented route":
        return  # its 422 comes from the app's exception handlers, outside what this client calls
    refused = await http.post(f"{API_PREFIX}/tasks", params={"wait": -1}, json={"handler": "x"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "wait"]


async def test_timers_requeue_a_task_whose_lease_expired(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(
        EngineSettings(lease_s=0.4, heartbeat_interval_s=0.1, worker_dead_after_s=60)
    )
    async with serve(engine, ServerSettings(timer_interval_s=0.05)) as served:
        quiet = await served.register(name="quiet")
        other = await served.register(name="other")
        task = await served.submit()
        [first] = await served.lease(quiet)
        # The quiet worker never heartbeats: the timers take its lease back and the other
        # worker's long-poll is woken by the re-queue. The other one heartbeats as a live worker
        # does (a woken long-poll only leases to a worker heard from within a lease's time).

        async def heartbeats() -> None:
            while True:
                await served.post(f"/workers/{other}/heartbeat", json={"running": []})
                await asyncio.sleep(0.1)  # its heartbeat interval

        beating = asyncio.create_task(heartbeats())
        try:
            leased = await asyncio.wait_for(served.lease(other, wait_s=30), 5)
        finally:
            beating.cancel()
        assert [a["task_id"] for a in leased] == [task["id"]]
        assert leased[0]["token"] == first["token"] + 1
        detail = (await served.get(f"/tasks/{task['id']}")).json()
        assert detail["attempt_log"][0]["outcome"] == "lost"
        assert detail["retries_used"] == 0
        assert (await served.get(f"/workers/{quiet}")).json()["state"] == "alive"


async def test_a_dead_worker_is_shown_with_the_tasks_whose_lease_has_not_run_out(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(
        EngineSettings(lease_s=30, heartbeat_interval_s=0.5, worker_dead_after_s=2)
    )
    async with serve(engine) as served:
        worker_id = await served.register()
        task = await served.submit()
        await served.lease(worker_id)
        worker = engine.worker(worker_id)
        worker.last_seen_at -= timedelta(seconds=10)  # silent for longer than dead-after
        with engine.store.transaction() as tx:
            tx.update_worker(worker)
        assert engine.expire_workers() == 1

        shown = (await served.get(f"/workers/{worker_id}")).json()
        assert (shown["state"], shown["running"]) == ("dead", [task["id"]])
        assert (await served.get(f"/tasks/{task['id']}")).json()["state"] == "running"


async def test_a_server_back_from_an_outage_keeps_the_leases_and_the_workers(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(EngineSettings(lease_s=5, heartbeat_interval_s=0.5, worker_dead_after_s=2))
    first_pass = Signal(engine.expire_workers, when=lambda declared: True)
    engine.expire_workers = first_pass  # type: ignore[method-assign]
    async with serve(engine) as served:
        await first_pass.wait()  # the timers have run
        worker_id = await served.register()
        await served.submit()
        [task] = await served.lease(worker_id)
    # Every server down for 10 s, longer than the lease and the dead-after time: as if each
    # record had been written 10 s earlier.
    with sqlite3.connect(engine.store.path) as db:  # type: ignore[attr-defined]
        db.execute("UPDATE timer_runs SET ran_at = ran_at - 10")
        db.execute("UPDATE workers SET last_seen_at = last_seen_at - 10")
        db.execute("UPDATE tasks SET lease_expires_at = lease_expires_at - 10")
        db.execute("UPDATE attempts SET lease_expires_at = lease_expires_at - 10")

    first_pass.event.clear()
    async with serve(engine) as served:
        await first_pass.wait()
        assert engine.worker(worker_id).state.value == "alive"
        assert engine.get(task["task_id"]).state.value == "running"
        beat = await served.post(
            f"/workers/{worker_id}/heartbeat",
            json={"running": [{"task_id": task["task_id"], "token": task["token"]}]},
        )
        assert beat.status_code == 200, beat.text
        assert beat.json()["stop"] == []
