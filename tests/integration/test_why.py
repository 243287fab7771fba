"""GET /tasks/{task_id}/why over REST, and the count of unschedulable tasks in /status and
/metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.core.capabilities import Capabilities
from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio

PLAIN = Capabilities(handlers=("echo", "sha256")).model_dump(mode="json")


async def test_why_names_what_keeps_a_task_from_running(served: Served) -> None:
    worker = await served.register(name="plain", capabilities=PLAIN, labels={"zone": "us"})
    task = await served.submit(handler="shell", args=["true"], require={"zone": "eu"})
    response = await served.get(f"/tasks/{task['id']}/why")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["state"], answer["waiting"], answer["unschedulable"]) == ("queued", True, True)
    [reason] = answer["reasons"]
    assert reason["code"] == "no_capable_worker"
    assert reason["workers"] == {
        worker: [
            "the 'shell' handler: needs a worker started with --allow shell",
            "label zone=eu",
        ]
    }
    assert "plain lacks" in reason["message"]


async def test_why_for_an_unknown_task_is_404(served: Served) -> None:
    response = await served.get("/tasks/no-such-task/why")
    assert response.status_code == 404
    assert "no-such-task" in response.text


async def test_status_and_metrics_count_the_tasks_no_live_worker_could_take(
    served: Served,
) -> None:
    await served.register(name="plain", capabilities=PLAIN)
    await served.submit(handler="shell", args=["true"])
    await served.submit(handler="echo", queue="nobody-serves-it")
    await served.submit(handler="echo")
    status = (await served.get("/status")).json()
    assert status["unschedulable"] == 2
    text = (await served.http.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [sample] = families["conveyor_tasks_unschedulable"].samples
    assert sample.value == 2
