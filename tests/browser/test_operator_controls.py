"""The operator's controls on the dashboard, against a real server and real workers: pause and
resume a queue (overview), every queue (overview and the banner) and a schedule (schedules page,
which also shows a schedule that cannot fire); drain and stop a worker (Workers page); retry a
group of failures from the Failed view (a dry run first, then the bulk action with its
progress); and a clear message when the browser's token may not do it (403)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.testing import Cluster, wait_until
from tests.browser.conftest import ROOT, WORKERS, Problems
from tests.browser.helpers import WAIT_MS, confirm, go, open_dashboard, unique


def test_a_queue_is_paused_from_the_overview_and_resumed_from_the_banner(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    queue = unique("pausable")
    task = client.submit("echo", 1, queue=queue)  # served by no worker: it shows in the table
    try:
        open_dashboard(page, cluster)
        row = page.locator(f'[data-queue="{queue}"]')
        row.get_by_role("button", name=f"Pause queue {queue}").click()
        page.get_by_test_id("pause-for").select_option(label="for 1 hour")
        confirm(page)
        expect(row.get_by_test_id("queue-paused")).to_be_visible(timeout=WAIT_MS)
        (pause,) = [p for p in client.pauses() if p.name == queue]
        assert pause.scope == "queue" and pause.until is not None
        left = pause.until - datetime.now(UTC)
        assert timedelta(minutes=58) < left <= timedelta(hours=1), left

        # The banner says so on every page, and resumes it.
        go(page, "/tasks")
        banner = page.locator(f'#pause-banner [data-pause="queue:{queue}"]')
        expect(banner).to_contain_text("paused until", timeout=WAIT_MS)
        banner.get_by_role("button", name=f"Resume queue {queue}").click()
        expect(banner).to_have_count(0, timeout=WAIT_MS)
        assert [p for p in client.pauses() if p.name == queue] == []
    finally:
        client.resume_queue(queue)
        client.cancel(task.id)
    problems.check()


def test_every_queue_is_paused_and_resumed_from_the_dashboard(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    try:
        open_dashboard(page, cluster)
        page.locator("[data-action=pause-all]").click()
        confirm(page)  # until resumed
        banner = page.locator('#pause-banner [data-pause="all"]')
        expect(banner).to_contain_text("Every queue paused until resumed", timeout=WAIT_MS)
        assert [(p.scope, p.until) for p in client.pauses()] == [("all", None)]
        expect(page.locator("[data-action=pause-all]")).to_be_hidden()
        banner.get_by_role("button", name="Resume all").click()
        expect(banner).to_have_count(0, timeout=WAIT_MS)
        assert client.pauses() == []
        expect(page.locator("[data-action=pause-all]")).to_be_visible()
    finally:
        client.resume_all()
    problems.check()


@pytest.fixture
def broken_schedule(client: Client) -> Iterator[str]:
    """A schedule firing every second whose dependency was deleted: it cannot fire."""
    name = unique("broken")
    queue = unique("nobody")
    gone = client.submit("echo", 1, queue=queue)
    client.add_schedule(
        name, "* * * * * *", TaskSpec(handler="echo", depends_on=[gone.id], queue=queue)
    )
    client.cancel(gone.id)
    client.delete(gone.id)
    try:
        yield name
    finally:
        client.resume_schedule(name)
        client.remove_schedule(name)


def test_the_schedules_page_shows_a_schedule_that_cannot_fire_and_pauses_it(
    page: Page, cluster: Cluster, client: Client, broken_schedule: str, problems: Problems
) -> None:
    open_dashboard(page, cluster, "/schedules")
    card = page.locator(f'[data-schedule="{broken_schedule}"]')
    expect(card.get_by_test_id("schedule-failing")).to_have_text("cannot fire", timeout=WAIT_MS)
    (schedule,) = [s for s in client.schedules() if s.spec.name == broken_schedule]
    assert schedule.last_error
    expect(card.get_by_test_id("schedule-error")).to_contain_text("could not submit its task")
    expect(card.get_by_test_id("schedule-error").locator("pre")).to_contain_text("depends_on")
    expect(card.locator("time").first).to_have_text(re.compile(r"just now|\d+ s ago"))

    card.get_by_role("button", name="Pause").click()
    confirm(page)
    expect(card.get_by_test_id("schedule-paused")).to_be_visible(timeout=WAIT_MS)
    assert any(p.scope == "schedule" and p.name == broken_schedule for p in client.pauses())
    card.get_by_role("button", name="Resume").click()
    expect(card.get_by_test_id("schedule-paused")).to_have_count(0, timeout=WAIT_MS)
    assert not any(p.name == broken_schedule for p in client.pauses())
    problems.check()


def test_a_worker_is_drained_from_the_workers_page_and_exits(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    name = unique("drain-me")
    cluster.start_worker(name, queues=unique("drain-queue"))
    open_dashboard(page, cluster, "/workers")
    card = page.locator(f'[data-worker-name="{name}"]')
    card.get_by_role("button", name="Drain").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text(f"Drain worker “{name}”?")
    confirm(page)
    assert cluster.workers[name].wait(WAIT_MS / 1000) == 0  # it drained, deregistered, exited
    expect(card).to_have_count(0, timeout=WAIT_MS)
    assert all(w.name != name for w in client.workers())
    problems.check()


def test_drain_all_on_a_host_names_its_workers_and_can_be_called_off(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    open_dashboard(page, cluster, "/workers")
    page.locator("[data-action=drain-host]").click()
    dialog = page.get_by_test_id("confirm-dialog")
    for name in WORKERS:
        expect(dialog).to_contain_text(name)
    dialog.get_by_role("button", name="Back").click()
    page.wait_for_timeout(500)
    assert all(w.state == "alive" for w in client.workers() if w.name in WORKERS)
    problems.check()


def test_a_worker_is_stopped_from_the_workers_page_and_hands_its_task_back(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    name = unique("stop-me")
    queue = unique("stop-queue")
    cluster.start_worker(name, queues=queue)
    task = client.submit("sleep", 60, queue=queue)
    try:
        wait_until(lambda: client.get(task.id).state.value == "running", 20, "the task to start")
        open_dashboard(page, cluster, "/workers")
        card = page.locator(f'[data-worker-name="{name}"]')
        expect(card.get_by_test_id("slots")).to_have_text("1/1", timeout=WAIT_MS)
        card.get_by_role("button", name="Stop").click()
        expect(page.get_by_test_id("confirm-dialog")).to_contain_text(
            "hands its 1 running task back"
        )
        confirm(page)
        assert cluster.workers[name].wait(WAIT_MS / 1000) == 0
        handed_back = client.get(task.id)
        assert handed_back.state.value == "queued"  # no other worker serves its queue
        assert handed_back.retries_used == 0
        expect(card).to_have_count(0, timeout=WAIT_MS)
    finally:
        client.cancel(task.id)
    problems.check()


def test_the_failed_view_retries_a_group_after_a_dry_run(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    message = unique("upstream refused")
    tasks = client.submit_batch([TaskSpec(handler="fail", args=[message]) for _ in range(3)])
    for task in tasks:
        assert client.result(task.id, timeout_s=30).done
    open_dashboard(page, cluster, "/failed")
    group = page.locator("[data-testid=failure-groups] article", has_text=message)
    expect(group.get_by_test_id("failure-count")).to_have_text("3 tasks", timeout=WAIT_MS)
    group.get_by_role("button", name="Retry all 3").click()

    # The dry run's count comes first, and nothing has changed yet.
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Retry 3 tasks?")
    expect(dialog).to_contain_text("3 would run again")
    assert all(client.get(t.id).attempts == 1 for t in tasks)
    confirm(page)

    progress = page.get_by_test_id("bulk-progress").first
    expect(progress).to_have_attribute("data-done", "true", timeout=WAIT_MS)
    expect(progress).to_contain_text("3 retried")
    ids = [t.id for t in tasks]

    def ran_again() -> bool:  # and failed again, as `fail` does
        return all(client.get(i).attempts == 2 for i in ids)

    wait_until(ran_again, 30, "the retried tasks to run again")
    problems.check()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """A server with tokens: the browser is given a client's, which may not pause a queue."""
    admin, client_token = "admin-" + "a" * 24, "client-" + "c" * 24
    directory: Path = tmp_path_factory.mktemp("guarded-cluster")
    c = Cluster(
        directory,
        cwd=ROOT,
        env={"CONVEYOR_TOKENS": f"admin:{admin},client:{client_token}"},
        token=admin,
    )
    c.start_server()
    try:
        yield c, client_token
    finally:
        c.stop()


def test_a_refused_admin_action_says_the_token_is_not_an_admins(
    page: Page, guarded: tuple[Cluster, str], problems: Problems
) -> None:
    cluster, token = guarded
    queue = unique("guarded")
    with Client(cluster.url, token=token) as client:
        client.submit("echo", 1, queue=queue)
        page.add_init_script(f"localStorage.setItem('conveyor.token', {token!r})")
        problems.allowed_statuses.add(403)
        open_dashboard(page, cluster)
        page.locator(f'[data-queue="{queue}"]').get_by_role(
            "button", name=f"Pause queue {queue}"
        ).click()
        confirm(page)
        toast = page.locator(".toast-error")
        expect(toast).to_contain_text(f"Only an admin token may pause queue “{queue}”")
        expect(toast).to_contain_text("API token")
        assert client.pauses() == []
    problems.check()


def test_the_task_page_says_why_a_task_is_not_running(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    queue = unique("unserved")
    blocker = client.submit("echo", 1, name=unique("blocker"), queue=queue)
    waiting = client.submit("echo", 2, name=unique("waiting"), depends_on=[blocker.id])
    try:
        # Queued on a queue that no worker serves: it can never run as things are.
        open_dashboard(page, cluster, f"/task/{blocker.id}")
        why = page.get_by_test_id("why")
        expect(why.get_by_test_id("why-main")).to_contain_text(
            f"No live worker serves its queue '{queue}'", timeout=WAIT_MS
        )
        expect(why.get_by_test_id("why-unschedulable")).to_be_visible()
        answer = client.why(blocker.id)
        assert answer.unschedulable and answer.reasons[0].code == "no_worker"

        # Pending on it: the line names the dependency and links to it.
        go(page, f"/task/{waiting.id}")
        main = page.get_by_test_id("why-main")
        expect(main).to_contain_text("It waits for 1 dependency to succeed", timeout=WAIT_MS)
        expect(main).to_contain_text(blocker.name or "")
        main.get_by_role("link", name=re.compile(blocker.id[-8:])).click()
        expect(page).to_have_url(re.compile(f"#/task/{blocker.id}$"))

        # The overview counts the task no worker can take.
        go(page, "/")
        card = page.get_by_test_id("unschedulable")
        expect(card.locator(".card-value")).not_to_have_attribute(
            "data-count", "0", timeout=WAIT_MS
        )
        expect(card).to_have_class(re.compile(r"\bcard-warn\b"))

        # A task that has ended has nothing to explain.
        client.cancel(waiting.id)
        go(page, f"/task/{waiting.id}")
        expect(page.get_by_test_id("task-state")).to_contain_text("cancelled", timeout=WAIT_MS)
        expect(page.get_by_test_id("why")).to_be_hidden()
    finally:
        client.cancel(blocker.id)
    problems.check()


def test_the_limits_page_shows_a_limit_holding_a_task_back_until_it_is_removed(
    page: Page, cluster: Cluster, client: Client, problems: Problems
) -> None:
    name = unique("frozen")
    client.set_limit(name, concurrency=0)
    task = client.submit("echo", 1, limits=[name])
    try:
        open_dashboard(page, cluster, "/limits")
        row = page.locator(f'[data-limit="{name}"]')
        expect(row).to_contain_text("holds every task back", timeout=WAIT_MS)
        # Held back once a worker's lease came to it and skipped it.
        expect(row).to_have_attribute("data-held", "1", timeout=WAIT_MS)
        client.delete_limit(name)
        expect(row).to_have_count(0, timeout=WAIT_MS)
        assert client.result(task.id, timeout_s=30).done
    finally:
        if any(limit.name == name for limit in client.limits()):
            client.delete_limit(name)
    problems.check()
