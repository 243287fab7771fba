"""The dashboard for everyone: axe-core finds no serious or critical violation on any page, in the
light and dark colour schemes and at phone size; and what a first-time user tripped on stays
fixed (tiny timeline labels, a table cut with no sign that it scrolls, worker counts that
disagree, a run time that counted the waits between attempts, half-task chart ticks, labels
written one way in the form and another in the filter)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Locator, Page, ViewportSize, expect

from conveyor.client import Client
from conveyor.core.spec import RetryPolicy, TaskSpec
from conveyor.testing import Cluster
from tests.browser.conftest import Problems
from tests.browser.helpers import WAIT_MS, axe_violations, go, open_dashboard, unique

PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Workload:
    """Tasks in every state, a workflow, failures, a schedule that cannot fire, a paused queue
    with a task waiting on it."""

    succeeded: str
    failed: str  # two attempts, a second apart
    queue: str  # paused, served by no worker
    waiting: str  # queued on that queue: the page says why it does not run
    label: str
    limit: str  # a limit, shown on the Limits page


@pytest.fixture(scope="module")
def workload(cluster: Cluster) -> Iterator[Workload]:
    name = unique("a11y")
    queue = unique("a11y-idle")
    schedule = unique("a11y-schedule")
    limit = unique("a11y-limit")
    with Client(cluster.url) as client:
        client.set_limit(limit, concurrency=2, rate=10, per_s=60)
        _, second = client.submit_batch(
            [
                TaskSpec(handler="echo", name=f"{name}-a", args=["x"], labels={"team": name}),
                TaskSpec(handler="sha256", name=f"{name}-b", args=[{"$result": f"{name}-a"}]),
            ]
        )
        failed = client.submit(
            "fail", "3 rows have a negative amount", name=f"{name}-failing", max_retries=1,
            retry=RetryPolicy(backoff_s=1.0, jitter=0),
        )  # fmt: skip
        timed_out = client.submit("sleep", 5, name=f"{name}-slow", timeout_s=0.3)
        running = client.submit("sleep", 60, name=f"{name}-long")
        waiting = client.submit("echo", 1, name=f"{name}-waiting", queue=queue)
        cancelled = client.submit("echo", 1, name=f"{name}-cancelled", queue=queue)
        client.cancel(cancelled.id)
        gone = client.submit("echo", 1, queue=queue)
        client.add_schedule(
            schedule, "* * * * * *", TaskSpec(handler="echo", depends_on=[gone.id], queue=queue)
        )
        client.cancel(gone.id)
        client.delete(gone.id)  # the schedule's dependency: it can no longer fire
        client.pause_queue(queue)
        for task in (second, failed, timed_out):
            assert client.result(task.id, timeout_s=30).done
        try:
            yield Workload(second.id, failed.id, queue, waiting.id, name, limit)
        finally:
            client.delete_limit(limit)
            client.resume_queue(queue)
            client.remove_schedule(schedule)
            if not client.get(running.id).state.is_terminal:  # it may have run its minute
                client.cancel(running.id)


def _pages(page: Page, w: Workload) -> dict[str, Locator]:
    """Each page, and what shows that it has drawn its data."""
    return {
        "/": page.locator(f'[data-queue="{w.queue}"]'),
        "/tasks": page.locator("tr[data-task-id]").first,
        f"/task/{w.succeeded}": page.locator(".dag .node").nth(1),
        f"/task/{w.failed}": page.get_by_test_id("task-error"),
        f"/task/{w.waiting}": page.get_by_test_id("why-main"),
        "/workflows": page.locator("[data-workflow-id]").first,
        f"/workflow/{w.succeeded}": page.locator(".dag .node").nth(1),
        "/workers": page.locator("[data-worker-name]").first,
        "/submit": page.get_by_test_id("submit-task"),
        "/schedules": page.get_by_test_id("schedule-error").first,
        "/failed": page.locator("[data-testid=failure-groups] article").first,
        "/limits": page.locator(f'[data-limit="{w.limit}"]'),
    }


@pytest.mark.parametrize("layout", ["light", "dark", "phone"])
def test_axe_finds_no_serious_violation_on_any_page(
    page: Page, cluster: Cluster, workload: Workload, problems: Problems, layout: str
) -> None:
    if layout == "dark":
        page.emulate_media(color_scheme="dark")
    if layout == "phone":
        page.set_viewport_size(PHONE)
    open_dashboard(page, cluster)
    found: list[str] = []
    for route, ready in _pages(page, workload).items():
        go(page, route)
        expect(ready).to_be_visible(timeout=WAIT_MS)
        page.wait_for_timeout(300)  # charts are drawn a frame after their box
        violations, passed = axe_violations(page)
        assert passed > 10, f"axe checked almost nothing on {route}"
        found += [f"{layout} {route}: {v}" for v in violations]
    # A dialog too: the confirmation of a pause, with its duration.
    go(page, "/")
    page.locator("[data-action=pause-all]").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    violations, _ = axe_violations(page)
    found += [f"{layout} pause dialog: {v}" for v in violations]
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Back").click()
    assert found == [], "\n".join(found)
    problems.check()


def test_the_dependency_graph_is_reachable_by_keyboard_and_named_by_its_text(
    page: Page, cluster: Cluster, workload: Workload, problems: Problems
) -> None:
    open_dashboard(page, cluster, f"/task/{workload.succeeded}")
    nodes = page.locator(".dag a.node")
    expect(nodes).to_have_count(2, timeout=WAIT_MS)
    # Real links in a list, in dependency order, each named by what it shows.
    expect(page.get_by_role("list", name="2 tasks, in dependency order")).to_be_visible()
    first = page.get_by_role("link", name=re.compile(f"^{workload.label}-a succeeded · echo"))
    expect(first).to_be_visible()
    current = page.get_by_role("link", name=re.compile(f"^{workload.label}-b succeeded · sha256"))
    expect(current).to_have_attribute("aria-current", "page")
    expect(current).to_contain_text(f"waits for {workload.label}-a")  # for screen readers
    # The keyboard reaches the first task and Enter opens it.
    first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/task/{first.get_attribute('data-task-id')}$"))
    problems.check()


def test_on_a_phone_the_timeline_is_legible_and_the_queue_table_says_it_scrolls(
    page: Page, cluster: Cluster, workload: Workload, problems: Problems
) -> None:
    page.set_viewport_size(PHONE)
    open_dashboard(page, cluster, f"/task/{workload.failed}")
    labels = page.get_by_test_id("timeline").locator(".timeline-label")
    expect(labels).to_have_count(2, timeout=WAIT_MS)
    size = labels.first.evaluate("el => el.getBoundingClientRect().height")
    assert size >= 11, f"the timeline's labels are {size}px tall"

    go(page, "/")
    table = page.get_by_test_id("queue-table")
    expect(table.locator(f'[data-queue="{workload.queue}"]')).to_be_visible(timeout=WAIT_MS)
    expect(table).to_have_class(re.compile(r"\bscrolls\b"))
    expect(table).to_have_attribute("role", "region")  # reachable and scrollable by keyboard
    expect(table).to_have_attribute("tabindex", "0")
    expect(page.get_by_text("The table scrolls sideways")).to_be_visible()
    # The last column (the pause control) is cut off, and in view once scrolled to.
    button = table.locator(f'[data-queue="{workload.queue}"] button')
    inside = "([el, box]) => el.getBoundingClientRect().right <= box.getBoundingClientRect().right"
    assert not page.evaluate(inside, [button.element_handle(), table.element_handle()])
    table.evaluate("el => { el.scrollLeft = el.scrollWidth }")
    assert page.evaluate(inside, [button.element_handle(), table.element_handle()])
    problems.check()


def test_the_overview_counts_workers_as_the_workers_page_does(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    workers = client.workers()
    alive = sum(1 for w in workers if w.state in ("alive", "draining"))
    dead = sum(1 for w in workers if w.state == "dead")
    open_dashboard(page, cluster)
    card = page.get_by_test_id("workers-alive")
    expect(card.locator(".card-value")).to_have_attribute("data-count", str(alive))
    expect(card.get_by_test_id("workers-dead")).to_contain_text(f"{dead} dead")
    expect(card).to_have_attribute("title", re.compile("Deregistered workers are not counted"))
    go(page, "/workers")
    expect(page.get_by_test_id("worker-summary")).to_contain_text(f"{alive} live")
    expect(page.get_by_test_id("worker-summary")).to_contain_text(f"{dead} dead")
    expect(page.locator("[data-worker-name]")).to_have_count(alive)
    problems.check()


def test_ran_for_adds_up_the_attempts_not_the_wait_between_them(
    page: Page, cluster: Cluster, client: Client, workload: Workload, problems: Problems
) -> None:
    task = client.get(workload.failed)
    assert task.attempts == 2 and task.started_at and task.finished_at
    ran_ms = sum(
        (a.finished_at - a.started_at).total_seconds() * 1000
        for a in task.attempt_log
        if a.finished_at
    )
    span_ms = (task.finished_at - task.started_at).total_seconds() * 1000
    assert span_ms > ran_ms + 400  # the backoff between the attempts (1 s)
    open_dashboard(page, cluster, f"/task/{task.id}")
    ran = page.locator("dt", has_text=re.compile("^ran for$")).locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(ran).to_have_text(re.compile(r"^\d+ ms in 2 attempts$"), timeout=WAIT_MS)
    shown = int((ran.text_content() or "").split()[0])
    assert abs(shown - ran_ms) <= 2, (shown, ran_ms)  # the browser keeps whole milliseconds
    span = page.locator("dt", has_text="first start to end").locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(span).to_have_text(re.compile(r"^\d+ ms$|^\d\.\d\d s$"))
    problems.check()


def test_chart_ticks_are_round_numbers_and_whole_tasks(
    page: Page, cluster: Cluster, problems: Problems
) -> None:
    open_dashboard(page, cluster)
    for chart in ("depth-chart", "throughput-chart"):
        expect(page.get_by_test_id(chart).locator("text.axis").first).to_be_visible()
    page.wait_for_timeout(1600)
    depth = page.get_by_test_id("depth-chart").locator("text.axis").all_text_contents()
    values = [t for t in depth if re.fullmatch(r"[\d.]+k?", t)]
    assert len(values) >= 2 and all("." not in v for v in values), depth
    rates = page.get_by_test_id("throughput-chart").locator("text.axis").all_text_contents()
    numbers = [float(t) for t in rates if re.fullmatch(r"[\d.]+", t)]
    step = numbers[1] - numbers[0]
    mantissa = float(f"{step:.1e}".split("e")[0])
    assert mantissa in (1.0, 2.0, 5.0), rates
    problems.check()


def test_labels_are_key_equals_value_in_the_task_filter_too(
    page: Page, cluster: Cluster, workload: Workload, problems: Problems
) -> None:
    label = f"team={workload.label}"
    open_dashboard(page, cluster, "/tasks")
    page.get_by_label("Label").fill(label)
    rows = page.locator("tr[data-task-id]")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    expect(rows.locator(".task-link")).to_have_text(f"{workload.label}-a")
    # The task shows its labels the same way, each a link to that filter.
    rows.locator(".task-link").click()
    chip = page.get_by_role("link", name=label)
    expect(chip).to_be_visible(timeout=WAIT_MS)
    chip.click()
    expect(page.get_by_label("Label")).to_have_value(label)
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    # An old link in the API's form still works, and is shown as key=value.
    go(page, "/")
    go(page, f"/tasks?label=team:{workload.label}")
    expect(page.get_by_label("Label")).to_have_value(label)
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    problems.check()


def test_live_updates_leave_the_keyboard_where_it_was(
    page: Page, cluster: Cluster, workload: Workload, problems: Problems
) -> None:
    open_dashboard(page, cluster)
    button = page.locator(f'[data-queue="{workload.queue}"] button')
    button.focus()
    # The queue's counts change under it (a task submitted to it): the table is drawn again.
    with Client(cluster.url) as client:
        task = client.submit("echo", 1, queue=workload.queue)
        expect(page.locator(f'[data-queue="{workload.queue}"] td').nth(1)).to_have_text(
            "2", timeout=WAIT_MS
        )
        client.cancel(task.id)
    assert page.evaluate("() => document.activeElement.dataset.focusKey") == (
        f"queue:{workload.queue}"
    )
    problems.check()
