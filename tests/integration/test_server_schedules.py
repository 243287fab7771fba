"""Schedules over HTTP: validated as tasks when stored; one that cannot fire shows why, and the
others go on firing."""

from __future__ import annotations

import anyio
import pytest

from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio

EVERY_SECOND = "* * * * * *"  # six fields: seconds last


async def test_a_schedule_depending_on_an_unknown_task_is_refused_as_a_submit_is(
    served: Served,
) -> None:
    task = {"handler": "sha256", "depends_on": ["no-such-task"]}
    submitted = await served.post("/tasks", json=task)
    stored = await served.post(
        "/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": task}
    )
    assert (submitted.status_code, stored.status_code) == (422, 422)
    assert "no-such-task" in stored.text and "task.depends_on" in stored.text
    assert (await served.get("/schedules/nightly")).status_code == 404


async def test_a_schedule_that_cannot_fire_shows_its_error_and_the_others_fire(
    served: Served,
) -> None:
    upstream = await served.submit(name="upstream")
    broken = {"handler": "sha256", "depends_on": [upstream["id"]]}
    for name, task in (("broken", broken), ("fine", {"handler": "sha256"})):
        response = await served.post(
            "/schedules", json={"name": name, "cron": EVERY_SECOND, "task": task}
        )
        assert response.status_code == 201, response.text
    assert (await served.delete(f"/tasks/{upstream['id']}")).status_code == 204

    with anyio.fail_after(10):
        while True:
            fine = (await served.get("/schedules/fine")).json()
            marked = (await served.get("/schedules/broken")).json()
            if fine["fired"] >= 2 and marked["last_error"]:
                break
            await anyio.sleep(0.05)
    assert upstream["id"] in marked["last_error"]
    assert marked["last_error_at"] is not None and marked["fired"] == 0
