"""Bulk actions through the API and the SDK: a dry run, an action run by the server in the
background and followed to the end, the refusals, and an action a crashed server left behind,
finished by the timers of the next one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.api.schemas import BulkOut
from conveyor.client import AsyncClient, Client
from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Engine, Report
from conveyor.engine import bulk as engine_bulk
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError
from conveyor.store.base import TaskFilter
from tests.helpers.live_server import LiveServer
from tests.integration.conftest import Served, serve


def failed_tasks(engine: Engine, count: int, *, queue: str = "q", error: str = "boom") -> list[str]:
    """`count` tasks of `queue` that failed with `error`, made through the engine."""
    tasks = engine.submit_batch([TaskSpec(handler="echo", queue=queue) for _ in range(count)])
    worker = engine.register_worker(
        name="failer", host="h", pid=1, concurrency=10_000, queues=[queue], resources=None
    )
    left = {t.id for t in tasks}
    while left:
        leased = engine.lease(worker.id, 1000)
        engine.report(
            worker.id, [Report(a.task_id, a.token, Outcome.FAILED, error=error) for a in leased]
        )
        left -= {a.task_id for a in leased}
    return [t.id for t in tasks]


def states(engine: Engine, ids: list[str]) -> dict[TaskState, int]:
    counts: dict[TaskState, int] = {}
    for task in engine.get_many(ids).values():
        counts[task.state] = counts.get(task.state, 0) + 1
    return counts


# ---- REST ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_dry_run_then_the_action_over_rest(served: Served) -> None:
    ids = failed_tasks(served.engine, 120)
    body = {"action": "retry", "filter": {"state": ["failed"], "queue": "q"}, "chunk_size": 50}

    dry = await served.post("/tasks/bulk", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert (plan["id"], plan["dry_run"], plan["done"]) == (None, True, True)
    assert (plan["total"], plan["estimate"], plan["by_state"]) == (120, 120, {"failed": 120})
    assert len(plan["sample"]) == 20 and {t["state"] for t in plan["sample"]} == {"failed"}
    assert plan["filter"] == {"state": ["failed"], "queue": "q"}
    assert states(served.engine, ids) == {TaskState.FAILED: 120}, "a dry run changes nothing"

    started = await served.post("/tasks/bulk", json=body)
    assert started.status_code == 202, started.text
    action = started.json()
    assert action["id"] and action["state"] == "running" and action["total"] == 120

    followed = await served.get(f"/bulk/{action['id']}", params={"wait": 10})
    assert followed.status_code == 200
    done = followed.json()
    assert (done["state"], done["done"]) == ("done", True)
    assert (done["matched"], done["changed"], done["skipped"], done["chunks"]) == (120, 120, 0, 3)
    assert states(served.engine, ids) == {TaskState.QUEUED: 120}


@pytest.mark.anyio
async def test_the_api_refuses_what_it_cannot_do(served: Served) -> None:
    async def bulk(body: dict[str, Any]) -> tuple[int, Any]:
        response = await served.post("/tasks/bulk", json=body)
        return response.status_code, response.json()

    status, answer = await bulk({"action": "retry", "filter": {}})
    assert status == 422 and "filter" in str(answer), answer
    status, answer = await bulk({"action": "explode", "filter": {"queue": "q"}})
    assert status == 422 and "action" in str(answer), answer
    status, answer = await bulk(
        {"action": "delete", "filter": {"created_after": "2026-01-02T00:00:00Z",
                                         "created_before": "2026-01-01T00:00:00Z"}}
    )  # fmt: skip
    assert status == 422 and "created_after must come before created_before" in str(answer)
    status, answer = await bulk({"action": "cancel", "filter": {"queue": "q"}, "chunk_size": 0})
    assert status == 422 and "chunk_size" in str(answer)

    first, second = (
        await bulk({"action": "cancel", "filter": {"queue": "q"}, "key": "k"}),
        await bulk({"action": "cancel", "filter": {"queue": "q"}, "key": "k"}),
    )
    assert (first[0], second[0]) == (202, 200) and first[1]["id"] == second[1]["id"]
    status, answer = await bulk({"action": "retry", "filter": {"queue": "q"}, "key": "k"})
    assert status == 409 and "another bulk action" in answer["detail"]
    assert (await served.get("/bulk/no-such-action")).status_code == 404


@pytest.mark.anyio
async def test_failure_groups_carry_the_filter_that_retries_them(served: Served) -> None:
    failed_tasks(served.engine, 3, error="disk full")
    other = failed_tasks(served.engine, 1, queue="r", error="no route to host")

    groups = (await served.get("/failures")).json()
    assert [(g["error"], g["count"]) for g in groups["groups"]] == [
        ("disk full", 3), ("no route to host", 1),
    ]  # fmt: skip
    group = groups["groups"][1]
    started = await served.post("/tasks/bulk", json={"action": "retry", "filter": group["filter"]})
    done = (await served.get(f"/bulk/{started.json()['id']}", params={"wait": 10})).json()
    assert done["changed"] == 1
    assert states(served.engine, other) == {TaskState.QUEUED: 1}
    assert [g["error"] for g in (await served.get("/failures")).json()["groups"]] == ["disk full"]


@pytest.mark.anyio
async def test_an_action_a_crashed_server_left_is_finished_by_the_next_ones_timers(
    server_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_bulk, "CLAIM_S", 0.3)
    ids = failed_tasks(server_engine, 300)
    record, _ = server_engine.start_bulk(BulkAction.RETRY, TaskFilter(queue="q"), chunk_size=50)
    # Two chunks, then the server that ran them is gone: its claim lapses, nobody releases it.
    server_engine.run_bulk(record.id, "crashed-server", max_chunks=2)
    assert server_engine.bulk(record.id).runner == "crashed-server"

    async with serve(server_engine):
        for _ in range(200):
            now = server_engine.bulk(record.id)
            if now.state is BulkState.DONE:
                break
            await asyncio.sleep(0.05)
    assert (now.state, now.matched, now.changed, now.skipped) == (BulkState.DONE, 300, 300, 0)
    assert now.runner is None
    assert states(server_engine, ids) == {TaskState.QUEUED: 300}


# ---- the SDK, on a live server ------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "bulk.db").start()
    yield server
    server.stop()


@pytest.mark.parametrize("connection", ["rest", "stream"])
def test_the_sdk_retries_cancels_and_deletes_by_filter(live: LiveServer, connection: str) -> None:
    failed = failed_tasks(live.engine, 250, queue="jobs")
    with Client(live.url, connection=connection) as client:  # type: ignore[arg-type]
        queued = [
            client.submit("echo", i, queue="idle", labels={"batch": "7"}).id for i in range(30)
        ]

        plan = client.retry_all(state="failed", queue="jobs", dry_run=True)
        assert (plan.id, plan.estimate, len(plan.sample)) == (None, 250, 20)
        assert client.wait_bulk(plan) is plan, "a dry run is done already"

        seen: list[BulkOut] = []
        action = client.retry_all(state="failed", queue="jobs", chunk_size=25)
        done = client.wait_bulk(action, timeout_s=30, on_progress=seen.append)
        assert (done.done, done.changed, done.chunks) == (True, 250, 11)
        assert seen and seen[-1] == done
        assert states(live.engine, failed) == {TaskState.QUEUED: 250}

        cancelled = client.wait_bulk(client.cancel_all(labels={"batch": "7"}), timeout_s=30)
        assert (cancelled.matched, cancelled.changed) == (30, 30)
        assert states(live.engine, queued) == {TaskState.CANCELLED: 30}

        removed = client.wait_bulk(client.delete_all(ids=queued[:10]), timeout_s=30)
        assert removed.changed == 10
        assert len(live.engine.get_many(queued)) == 20
        assert client.bulk(removed.id or "").state is BulkState.DONE

        with pytest.raises(InvalidSpecError) as caught:
            client.delete_all()
        assert caught.value.field == "filter"
        with pytest.raises(InvalidSpecError):
            client.retry_all(state="no-such-state")
        with pytest.raises(NotFoundError):
            client.bulk("no-such-action")
        client.cancel_all(queue="idle", key="once")
        with pytest.raises(ConflictError):
            client.retry_all(queue="idle", key="once")


def test_the_async_sdk_waits_for_an_action_with_progress(live: LiveServer) -> None:
    failed_tasks(live.engine, 60, queue="jobs")

    async def main() -> tuple[BulkOut, int]:
        progress: list[int] = []
        async with AsyncClient(live.url) as client:
            action = await client.retry_all(queue="jobs", chunk_size=10)
            done = await client.wait_bulk(
                action.id or "", on_progress=lambda a: progress.append(a.changed)
            )
        return done, len(progress)

    done, reports = asyncio.run(main())
    assert (done.state, done.changed) == (BulkState.DONE, 60)
    assert reports >= 1


def test_submits_stay_quick_while_a_large_action_runs(live: LiveServer) -> None:
    """The server runs the action in chunks in the background: a submit waits at most for the
    chunk in progress, never for the whole action."""
    failed_tasks(live.engine, 20_000, queue="jobs")
    latencies: list[float] = []
    with Client(live.url) as client:
        action = client.retry_all(queue="jobs")
        while not client.bulk(action.id or "").done:
            started = time.perf_counter()
            client.submit("echo", queue="elsewhere")
            latencies.append(time.perf_counter() - started)
        finished = client.bulk(action.id or "")
    assert finished.changed == 20_000
    assert len(latencies) >= 3, "the action ran long enough to submit meanwhile"
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
