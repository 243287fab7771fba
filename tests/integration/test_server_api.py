"""The client side of the REST API: submit, list, read, cancel, retry, delete, status, health."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio


async def test_submit_returns_201_and_the_task_reads_back_with_attempts(served: Served) -> None:
    response = await served.post(
        "/tasks",
        json={"handler": "sha256", "args": ["abc"], "priority": 5, "labels": {"team": "data"}},
    )
    assert response.status_code == 201
    task = response.json()
    assert task["state"] == "queued"
    assert task["priority"] == 5
    detail = await served.get(f"/tasks/{task['id']}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["id"] == task["id"]
    assert body["args"] == ["abc"]
    assert body["attempt_log"] == []
    assert body["dependents"] == []


async def test_a_second_submit_with_the_same_key_returns_the_first_task_with_200(
    served: Served,
) -> None:
    first = await served.post("/tasks", json={"handler": "sha256", "key": "once"})
    again = await served.post("/tasks", json={"handler": "sha256", "args": [1], "key": "once"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["args"] == []


async def test_batch_is_created_with_names_resolved_and_dependents_listed(served: Served) -> None:
    response = await served.post(
        "/tasks/batch",
        json={
            "tasks": [
                {"handler": "sha256", "name": "fetch"},
                {"handler": "sha256", "name": "digest", "depends_on": ["fetch"]},
            ]
        },
    )
    assert response.status_code == 201
    fetch, digest = response.json()["tasks"]
    assert digest["depends_on"] == [fetch["id"]]
    assert digest["state"] == "pending"
    detail = (await served.get(f"/tasks/{fetch['id']}")).json()
    assert detail["dependents"] == [digest["id"]]


async def test_list_filters_by_state_queue_name_handler_and_label(served: Served) -> None:
    a = await served.submit(name="a", queue="q1", labels={"team": "x"})
    b = await served.submit(name="b", queue="q2", handler="noop")
    c = await served.submit(name="c", delay_s=3600)

    async def ids(**params: object) -> list[str]:
        response = await served.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await ids() == [c["id"], b["id"], a["id"]]  # newest first
    assert await ids(state="pending") == [c["id"]]
    assert await ids(state=["pending", "queued"]) == [c["id"], b["id"], a["id"]]
    assert await ids(queue="q1") == [a["id"]]
    assert await ids(name="b") == [b["id"]]
    assert await ids(handler="noop") == [b["id"]]
    assert await ids(label="team:x") == [a["id"]]
    assert await ids(label="team:y") == []


async def test_list_pages_with_an_opaque_cursor_until_it_is_null(served: Served) -> None:
    submitted = [(await served.submit(args=[i]))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await served.get("/tasks", params=params)).json()
        seen += [t["id"] for t in page["tasks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(submitted))
    assert pages == 3


async def test_cancel_then_retry_then_delete(served: Served) -> None:
    task = await served.submit()
    cancelled = await served.post(f"/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["reason"] == "cancelled_by_user"

    retried = await served.post(f"/tasks/{task['id']}/retry")
    assert retried.status_code == 200
    assert retried.json()["state"] == "queued"

    deleted = await served.delete(f"/tasks/{task['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await served.get(f"/tasks/{task['id']}")).status_code == 404


async def test_cancel_a_finished_task_is_409(served: Served) -> None:
    task = await served.submit()
    assert (await served.post(f"/tasks/{task['id']}/cancel")).status_code == 200
    again = await served.post(f"/tasks/{task['id']}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]


async def test_retry_a_queued_task_is_409(served: Served) -> None:
    task = await served.submit()
    response = await served.post(f"/tasks/{task['id']}/retry")
    assert response.status_code == 409


async def test_result_without_wait_answers_at_once_with_done_false(served: Served) -> None:
    task = await served.submit()
    response = await served.get(f"/tasks/{task['id']}/result")
    assert response.status_code == 200
    assert response.json() == {
        "id": task["id"],
        "state": "queued",
        "done": False,
        "result": None,
        "error": None,
        "reason": None,
    }


async def test_status_counts_tasks_by_state_and_queue_and_counts_workers(served: Served) -> None:
    await served.submit(queue="a")
    await served.submit(queue="a")
    doomed = await served.submit(queue="b")
    await served.post(f"/tasks/{doomed['id']}/cancel")
    worker = await served.register()
    await served.register()
    await served.delete(f"/workers/{worker}")

    status = (await served.get("/status")).json()
    assert status["counts"]["queued"] == 2
    assert status["counts"]["cancelled"] == 1
    assert status["counts"]["running"] == 0  # every state is listed
    assert status["queues"] == {"a": {"queued": 2}, "b": {"cancelled": 1}}
    assert status["workers_alive"] == 1
    assert status["workers_total"] == 2
    assert status["finished_last_minute"] == 1  # the cancel, seen by this server


async def test_monitor_reports_the_server_host_and_live_workers_metrics(served: Served) -> None:
    worker = await served.register(name="gpu-box")
    beat = await served.post(
        f"/workers/{worker}/heartbeat", json={"metrics": {"cpu_percent": 12.5}}
    )
    assert beat.status_code == 200
    monitor = (await served.get("/monitor")).json()
    server = monitor["server"]
    assert server["cpu_count"] >= 1
    assert server["memory_total_bytes"] > 0
    assert server["disk_total_bytes"] > 0
    assert server["gpus"] == []  # no GPU on these machines, and no crash either
    [entry] = monitor["workers"]
    assert entry["id"] == worker
    assert entry["name"] == "gpu-box"
    assert entry["metrics"] == {"cpu_percent": 12.5}


async def test_health_reads_the_store(served: Served) -> None:
    response = await served.http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["store"] == "sqlite"
    assert body["version"]
