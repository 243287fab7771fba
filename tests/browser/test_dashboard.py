"""The dashboard in a real browser against a real server and workers: every page loads cleanly,
tasks can be submitted, cancelled and retried from it, workflows are drawn with their states,
workers show live metrics, and a server that wants a token gets one."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest
from playwright.sync_api import Page, Route, expect

from conveyor.api.schemas import TaskOut
from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.testing import Cluster
from tests.browser.conftest import WORKERS, Problems
from tests.browser.helpers import WAIT_MS, confirm, go, open_dashboard, unique


def test_every_page_loads_with_no_console_errors_and_no_failed_requests(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    first, second = _pair(client)
    assert client.result(second.id, timeout_s=30).done
    open_dashboard(page, cluster)
    expect(page.locator(".state-card")).to_have_count(7)
    expect(page.get_by_test_id("throughput-chart").locator("svg")).to_be_visible()
    pages = {
        "/tasks": page.locator("tr[data-task-id]").first,
        f"/task/{second.id}": page.get_by_test_id("task-result"),
        "/workflows": page.locator(f'[data-workflow-id="{first.id}"]'),
        f"/workflow/{second.id}": page.locator(".dag .node").nth(1),
        "/workers": page.locator("[data-worker-name]").first,
        "/submit": page.get_by_test_id("submit-task"),
        "/failed": page.get_by_test_id("failure-groups"),
        "/schedules": page.get_by_test_id("schedules"),
        "/limits": page.get_by_test_id("limits"),
        "/": page.locator(".state-card").first,
    }
    for route, ready in pages.items():
        go(page, route)
        expect(ready).to_be_visible(timeout=WAIT_MS)
        page.wait_for_timeout(1600)  # at least one live update on each page
    problems.check()


def _pair(client: Client) -> tuple[TaskOut, TaskOut]:
    """Two tasks, the second using the first's result: a small workflow."""
    name = unique("load")
    tasks = client.submit_batch(
        [
            TaskSpec(handler="echo", name=f"{name}-a", args=["x"]),
            TaskSpec(handler="sha256", name=f"{name}-b", args=[{"$result": f"{name}-a"}]),
        ]
    )
    return tasks[0], tasks[1]


def test_a_task_submitted_from_the_dashboard_appears_runs_and_shows_its_result(
    page: Page, cluster: Cluster, problems: Problems
) -> None:
    name = unique("from-browser")
    open_dashboard(page, cluster, "/submit")
    page.get_by_label("Handler").fill("sha256")
    page.get_by_label("Arguments (JSON list)").fill('["hello from the browser"]')
    page.locator("input[name=name]").fill(name)
    page.get_by_test_id("submit-task").click()
    confirm(page)

    expect(page).to_have_url(re.compile(r"#/task/[0-9a-f]{32}$"), timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(page.get_by_test_id("task-state")).to_contain_text("succeeded", timeout=WAIT_MS)
    digest = hashlib.sha256(b"hello from the browser").hexdigest()
    expect(page.get_by_test_id("task-result")).to_have_text(f'"{digest}"')
    expect(page.get_by_test_id("attempts").locator("li")).to_have_count(1)

    go(page, "/tasks")
    page.get_by_label("Search by name or id").fill(name[-8:])
    row = page.locator("tr[data-task-id]")
    expect(row).to_have_count(1, timeout=WAIT_MS)
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.locator(".task-link")).to_have_text(name)
    problems.check()


def test_cancel_and_retry_work_from_the_task_page(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    task = client.submit("sleep", 60, name=unique("cancel-me"))
    try:
        open_dashboard(page, cluster, f"/task/{task.id}")
        state = page.get_by_test_id("task-state")
        expect(state).to_contain_text("running", timeout=WAIT_MS)

        page.locator("[data-action=cancel]").click()
        confirm(page)
        expect(state).to_contain_text("cancelled", timeout=WAIT_MS)
        assert client.get(task.id).state.value == "cancelled"

        page.locator("[data-action=retry]").click()
        confirm(page)
        expect(state).to_contain_text("running", timeout=WAIT_MS)
        expect(page.get_by_test_id("attempts").locator("li")).to_have_count(2, timeout=WAIT_MS)
        assert client.get(task.id).attempts == 2
    finally:
        if not client.get(task.id).state.is_terminal:
            client.cancel(task.id)
    problems.check()


def test_a_cancel_can_be_called_off_in_its_confirmation(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    task = client.submit("echo", 1, queue=unique("nobody-serves"))
    try:
        open_dashboard(page, cluster, f"/task/{task.id}")
        page.locator("[data-action=cancel]").click()
        page.get_by_test_id("confirm-dialog").get_by_role("button", name="Back").click()
        page.wait_for_timeout(500)
        assert client.get(task.id).state.value == "queued"
        expect(page.get_by_test_id("task-state")).to_contain_text("queued")
    finally:
        client.cancel(task.id)
    problems.check()


def test_the_dag_view_shows_a_three_step_workflow_with_the_right_states(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    flow = unique("three-steps")
    labels = {"workflow": flow}
    fetch, check, publish = client.submit_batch(
        [
            TaskSpec(handler="echo", name=f"{flow}-fetch", args=["data"], labels=labels),
            TaskSpec(
                handler="fail",
                name=f"{flow}-check",
                args=["bad data"],
                depends_on=[f"{flow}-fetch"],
                labels=labels,
            ),
            TaskSpec(
                handler="echo",
                name=f"{flow}-publish",
                args=["done"],
                depends_on=[f"{flow}-check"],
                labels=labels,
            ),
        ]
    )
    assert client.result(publish.id, timeout_s=30).done

    open_dashboard(page, cluster, "/workflows")
    row = page.locator(f'[data-workflow-id="{fetch.id}"]')
    expect(row).to_contain_text(flow, timeout=WAIT_MS)
    expect(row).to_contain_text("3 of 3 done")
    row.click()

    dag = page.get_by_test_id("workflow-dag")
    expect(dag.locator(".node")).to_have_count(3, timeout=WAIT_MS)
    expected = {fetch.id: "succeeded", check.id: "failed", publish.id: "failed"}
    for task_id, state in expected.items():
        expect(dag.locator(f'.node[data-task-id="{task_id}"]')).to_have_attribute(
            "data-state", state
        )
    expect(dag.locator("path.edge")).to_have_count(2)
    expect(dag.locator(f'[data-edge="{fetch.id}>{check.id}"]')).to_have_count(1)
    expect(dag.locator(f'[data-edge="{check.id}>{publish.id}"]')).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Workflow: {flow}")
    expect(page.get_by_test_id("workflow-counts")).to_contain_text("1 succeeded · 2 failed")

    # A node opens its task, whose own graph shows the same three steps.
    dag.locator(f'.node[data-task-id="{check.id}"]').click()
    expect(page).to_have_url(re.compile(f"#/task/{check.id}$"))
    expect(page.get_by_test_id("lineage").locator(".node")).to_have_count(3, timeout=WAIT_MS)
    expect(page.get_by_test_id("task-error")).to_contain_text("bad data")
    problems.check()


def test_the_workers_page_shows_live_metrics_once_per_host(
    page: Page, cluster: Cluster, problems: Problems
) -> None:
    open_dashboard(page, cluster, "/workers")
    # The server and both workers run on this machine: one host, its figures shown once.
    host = page.locator("[data-host]")
    expect(host).to_have_count(1, timeout=WAIT_MS)
    expect(host).to_have_attribute("data-host", socket.gethostname())
    expect(host).to_contain_text("the server")
    for gauge in ("cpu", "ram", "disk"):
        expect(host.locator(f'[data-gauge="{gauge}"]')).not_to_have_attribute("data-value", "")
    expect(host.locator('[data-gauge="gpu"]')).to_contain_text("none")  # no GPU here
    for name in WORKERS:
        card = host.locator(f'[data-worker-name="{name}"]')
        expect(card).to_be_visible(timeout=WAIT_MS)
        expect(card.locator(".badge")).to_have_text("alive")
        expect(card.locator("[data-gauge]")).to_have_count(0)  # not repeated on each card

    # Live: the host's CPU history grows as samples arrive, without a reload.
    selector = "[data-host] polyline[data-series='CPU']"
    expect(page.locator(selector)).to_be_visible(timeout=WAIT_MS)
    before = int(page.locator(selector).get_attribute("data-points") or 0)
    page.wait_for_function(
        """([selector, before]) => {
            const line = document.querySelector(selector);
            return line && Number(line.dataset.points) > before;
        }""",
        arg=[selector, before],
        timeout=WAIT_MS,
    )
    heartbeat = page.locator(f'[data-worker-name="{WORKERS[0]}"] time').first
    expect(heartbeat).to_have_text(re.compile(r"just now|\d s ago"))
    problems.check()


def test_a_server_that_wants_a_token_gets_one_from_a_prompt(
    page: Page, cluster: Cluster, problems: Problems
) -> None:
    seen: list[str | None] = []

    def guarded(route: Route) -> None:
        auth = route.request.headers.get("authorization")
        seen.append(auth)
        if auth != "Bearer s3cret":
            route.fulfill(status=401, json={"detail": "a token is required"})
        else:
            route.continue_()

    problems.allowed_statuses.add(401)
    page.route(re.compile(r".*/api/v1/.*"), guarded)
    page.goto(f"{cluster.url}/#/")
    dialog = page.get_by_test_id("token-dialog")
    expect(dialog).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("dialog[open]")).to_have_count(1)  # one prompt for every refused call
    page.get_by_test_id("token-input").fill("s3cret")
    dialog.get_by_role("button", name="Use token").click()
    expect(page.locator(".state-card")).to_have_count(7, timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    assert page.evaluate("localStorage.getItem('conveyor.token')") == "s3cret"
    assert "Bearer s3cret" in seen

    # A reload sends the stored token at once: no prompt.
    seen.clear()
    page.reload()
    expect(page.locator(".state-card")).to_have_count(7, timeout=WAIT_MS)
    assert seen and all(auth == "Bearer s3cret" for auth in seen)
    expect(page.get_by_test_id("token-dialog")).to_have_count(0)
    problems.check()


@pytest.mark.parametrize("width", [390])
def test_a_phone_sized_screen_shows_the_pages_in_one_column(
    page: Page, cluster: Cluster, problems: Problems, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 844})
    open_dashboard(page, cluster)
    for route in ("/", "/tasks", "/workers", "/workflows", "/submit"):
        go(page, route)
        page.wait_for_timeout(300)
        page.wait_for_load_state()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} scrolls sideways by {overflow}px on a {width}px screen"
    problems.check()
