"""The operator's controls through the API and the SDK: pausing and resuming queues, schedules
and the cluster, draining and stopping workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from conveyor.api.schemas import RegisterIn
from conveyor.client import Client, WorkerConnection
from conveyor.core.spec import TaskSpec
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError
from tests.helpers.live_server import LiveServer
from tests.integration.conftest import Served

# ---- REST -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_paused_queue_leases_nothing_and_resuming_wakes_a_waiting_long_poll(
    served: Served,
) -> None:
    worker = await served.register(queues=["q"])
    task = await served.submit(queue="q")
    paused = await served.post("/queues/q/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["scope"] == "queue" and paused.json()["until"] is None
    assert await served.lease(worker) == []
    got: list[dict[str, object]] = []

    async def poll() -> None:
        got.extend(await served.lease(worker, wait_s=10))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        await anyio.sleep(0.3)  # the long-poll waits on the server
        assert got == []
        resumed = (await served.post("/queues/q/resume")).json()
        assert resumed["resumed"] is True and resumed["pause"]["name"] == "q"
    assert [t["task_id"] for t in got] == [task["id"]]
    assert time.monotonic() - started < 3, "woken by the resume, not by the end of the poll"
    again = (await served.post("/queues/q/resume")).json()
    assert again == {"resumed": False, "pause": None}


@pytest.mark.anyio
async def test_a_pause_that_ends_by_itself_wakes_a_waiting_long_poll(served: Served) -> None:
    worker = await served.register()
    task = await served.submit()
    until = (datetime.now(UTC) + timedelta(seconds=0.6)).isoformat()
    response = await served.post("/pause", params={"until": until})
    assert response.status_code == 200, response.text
    assert [p["scope"] for p in (await served.get("/pauses")).json()["pauses"]] == ["all"]
    started = time.monotonic()
    leased = await served.lease(worker, wait_s=10)
    waited_s = time.monotonic() - started
    assert [t["task_id"] for t in leased] == [task["id"]]
    assert 0.3 < waited_s < 3
    assert (await served.get("/pauses")).json()["pauses"] == []


@pytest.mark.anyio
async def test_bad_pauses_and_drains_are_refused_naming_what_is_wrong(served: Served) -> None:
    past = await served.post("/queues/q/pause", params={"until": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422 and "until" in past.text
    bad_queue = await served.post("/queues/not a queue/pause")
    assert bad_queue.status_code == 422 and "queue" in bad_queue.text
    assert (await served.post("/schedules/nope/pause")).status_code == 404
    nobody = await served.post("/workers/drain", json={})
    assert nobody.status_code == 422 and "ids" in nobody.text
    unknown = await served.post("/workers/stop", json={"ids": ["no-such-worker"]})
    assert unknown.status_code == 404
    extra = await served.post("/workers/drain", json={"queue": "q", "everyone": True})
    assert extra.status_code == 422


@pytest.mark.anyio
async def test_a_drained_worker_is_told_in_its_heartbeat_and_listed_as_draining(
    served: Served,
) -> None:
    a = await served.register(name="a", host="h1", queues=["q"])
    b = await served.register(name="b", host="h2", queues=["q"])
    told = (await served.post("/workers/drain", json={"host": "h1"})).json()["workers"]
    assert [(w["id"], w["state"], w["hand_back"]) for w in told] == [(a, "draining", False)]
    stopped = (await served.post("/workers/stop", json={"ids": [b]})).json()["workers"]
    assert [(w["id"], w["hand_back"]) for w in stopped] == [(b, True)]
    beats = [(await served.post(f"/workers/{w}/heartbeat", json={})).json() for w in (a, b)]
    assert [(x["drain"], x["hand_back"]) for x in beats] == [(True, False), (True, True)]
    listed = {w["id"]: w for w in (await served.get("/workers")).json()["workers"]}
    assert (listed[a]["state"], listed[b]["hand_back"]) == ("draining", True)


# ---- the SDK, on a live server ----------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "control.db").start()
    yield server
    server.stop()


def test_the_sdk_pauses_and_resumes_queues_schedules_and_everything(live: LiveServer) -> None:
    with Client(live.url) as client:
        until = datetime.now() + timedelta(hours=1)  # no timezone: this machine's local time
        pause = client.pause_queue("reports", until=until)
        assert pause.until is not None
        assert abs((pause.until - until.astimezone()).total_seconds()) < 0.01
        client.add_schedule("nightly", "0 3 * * *", TaskSpec(handler="echo"))
        client.pause_schedule("nightly")
        client.pause_all()
        assert [(p.scope, p.name) for p in client.pauses()] == [
            ("all", ""),
            ("queue", "reports"),
            ("schedule", "nightly"),
        ]
        assert client.resume_all().resumed is True
        assert client.resume_schedule("nightly").resumed is True
        assert client.resume_queue("reports").resumed is True
        assert client.resume_queue("reports").resumed is False
        assert client.pauses() == []
        with pytest.raises(NotFoundError):
            client.pause_schedule("missing")
        with pytest.raises(InvalidSpecError) as caught:
            client.pause_queue("reports", until=datetime(2020, 1, 1, tzinfo=UTC))
        assert caught.value.field == "until"


def test_the_sdk_drains_and_stops_workers(live: LiveServer) -> None:
    with Client(live.url) as client, WorkerConnection(live.url) as conn:
        a = conn.register(RegisterIn(name="a", host="h", pid=1, concurrency=1, queues=["q"]))
        b = conn.register(RegisterIn(name="b", host="h", pid=2, concurrency=1, queues=["r"]))
        assert [w.name for w in client.drain_workers(queue="q")] == ["a"]
        assert [w.name for w in client.stop_workers([b.id])] == ["b"]
        assert conn.heartbeat(a.id, []).drain is True
        assert conn.heartbeat(b.id, []).hand_back is True
        assert conn.lease(a.id, 1).tasks == []
        conn.deregister(a.id)
        with pytest.raises(ConflictError):
            client.drain_workers([a.id])
        with pytest.raises(InvalidSpecError):
            client.drain_workers()
