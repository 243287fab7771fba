"""Concurrency and rate limits through the API and the SDK: set, list, read, remove; a task's
limits in its answer; a key that cannot be filled in refused naming the field; a slot freed by a
report wakes a long-poll waiting for the held task."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from conveyor import task
from conveyor.client import Client
from conveyor.errors import InvalidSpecError, NotFoundError
from tests.helpers.live_server import LiveServer
from tests.integration.conftest import Served

# ---- REST -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_limits_are_set_listed_read_and_removed(served: Served) -> None:
    put = await served.http.put("/api/v1/limits/db", json={"concurrency": 1})
    assert put.status_code == 200, put.text
    assert put.json() == {
        "name": "db", "concurrency": 1, "rate": None, "per_s": 1.0, "running": 0, "held": 0,
    }  # fmt: skip
    await served.http.put("/api/v1/limits/api", json={"rate": 10, "per_s": 60})
    worker = await served.register()
    first = await served.submit(limits=["db"])
    second = await served.submit(limits=["db"])
    assert [t["task_id"] for t in await served.lease(worker, max=5)] == [first["id"]]
    listed = (await served.get("/limits")).json()["limits"]
    assert [(x["name"], x["running"], x["held"]) for x in listed] == [("api", 0, 0), ("db", 1, 1)]
    detail = (await served.get(f"/tasks/{second['id']}")).json()
    assert (detail["state"], detail["limits"], detail["held_on"]) == ("queued", ["db"], "db")
    assert (await served.delete("/limits/db")).status_code == 204
    assert (await served.get("/limits/db")).status_code == 404
    assert (await served.delete("/limits/db")).status_code == 404
    assert [t["task_id"] for t in await served.lease(worker, max=5)] == [second["id"]]


@pytest.mark.anyio
async def test_bad_limits_and_keys_are_refused_naming_the_field(served: Served) -> None:
    for body, field in (
        ({}, ["body"]),
        ({"concurrency": -1}, ["body", "concurrency"]),
        ({"rate": 5, "per_s": 0}, ["body", "per_s"]),
        ({"concurrency": True}, ["body", "concurrency"]),
        ({"concurrency": 1, "burst": 2}, ["body", "burst"]),
    ):
        response = await served.http.put("/api/v1/limits/db", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == field, (body, response.text)
    assert (await served.http.put("/api/v1/limits/a:b", json={"concurrency": 1})).status_code == 422
    response = await served.post(
        "/tasks",
        json={"handler": "sha256", "limits": ["db", "tenant:{kwargs.tenant}"], "kwargs": {}},
    )
    assert response.status_code == 422, response.text
    assert "limits.1" in response.text and "kwargs has no 'tenant'" in response.text
    response = await served.post("/tasks", json={"handler": "sha256", "limits": ["t:{x.y}"]})
    assert response.status_code == 422 and "limits" in response.text


@pytest.mark.anyio
async def test_a_slot_freed_by_a_report_wakes_a_long_poll_waiting_for_a_held_task(
    served: Served,
) -> None:
    await served.http.put("/api/v1/limits/db", json={"concurrency": 1})
    first_worker = await served.register(name="w1")
    waiting_worker = await served.register(name="w2")
    await served.submit(limits=["db"])
    held = await served.submit(limits=["db"])
    (running,) = await served.lease(first_worker, max=5)
    got: list[dict[str, object]] = []

    async def poll() -> None:
        got.extend(await served.lease(waiting_worker, max=5, wait_s=10))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        await anyio.sleep(0.3)
        assert got == []
        report = {"task_id": running["task_id"], "token": running["token"], "outcome": "succeeded"}
        response = await served.post(f"/workers/{first_worker}/report", json={"reports": [report]})
        assert response.status_code == 200, response.text
    assert [t["task_id"] for t in got] == [held["id"]]
    assert time.monotonic() - started < 3, "woken by the report, not by the end of the poll"


@pytest.mark.anyio
async def test_metrics_show_each_limits_running_and_held_tasks(served: Served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    await served.http.put("/api/v1/limits/db", json={"concurrency": 1})
    await served.http.put("/api/v1/limits/idle", json={"rate": 5})
    worker = await served.register()
    for _ in range(3):
        await served.submit(limits=["db"])
    await served.lease(worker, max=5)
    text = (await served.http.get("/metrics")).text
    found = {
        (sample.name, sample.labels["limit"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("conveyor_limit_")
    }
    assert found == {
        ("conveyor_limit_running_tasks", "db"): 1,
        ("conveyor_limit_held_tasks", "db"): 2,
        ("conveyor_limit_running_tasks", "idle"): 0,
        ("conveyor_limit_held_tasks", "idle"): 0,
    }


# ---- the SDK ----------------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "limits.db").start()
    yield server
    server.stop()


@task(limits=["tenant:{kwargs.tenant}"])
def per_tenant(tenant: str) -> str:
    return tenant


def test_the_sdk_sets_lists_and_removes_limits_and_task_takes_them(live: LiveServer) -> None:
    with Client(live.url) as client:
        set_ = client.set_limit("tenant", concurrency=2)
        assert (set_.name, set_.concurrency, set_.rate) == ("tenant", 2, None)
        client.set_limit("api", rate=100, per_s=60)
        assert [x.name for x in client.limits()] == ["api", "tenant"]
        assert client.limit("api").per_s == 60
        submitted = client.submit(per_tenant, kwargs={"tenant": "acme"})
        assert submitted.limits == ["tenant:acme"]
        with pytest.raises(InvalidSpecError) as refused:
            client.set_limit("db")
        assert "concurrency, rate, or both" in str(refused.value)
        with pytest.raises(InvalidSpecError):
            client.set_limit("db", concurrency=-1)
        client.delete_limit("api")
        with pytest.raises(NotFoundError):
            client.limit("api")
        with pytest.raises(NotFoundError):
            client.delete_limit("api")


def test_conveyor_apply_sets_a_job_files_limits_before_its_tasks(
    live: LiveServer, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from conveyor.cli.main import cli

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "limits:\n  db: {concurrency: 2}\n"
        "tasks:\n  - {name: a, handler: echo, args: [1], limits: [db]}\n"
    )
    result = CliRunner().invoke(cli, ["apply", str(jobs), "--server", live.url])
    assert result.exit_code == 0, result.output
    with Client(live.url) as client:
        assert client.limit("db").concurrency == 2
        (submitted,) = client.list().tasks
        assert submitted.limits == ["db"]
