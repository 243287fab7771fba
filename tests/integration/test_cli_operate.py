"""The operator's commands against a live server: pause and resume (a queue, a schedule,
everything), pauses, workers drain|stop, and retry/cancel/rm by filter as bulk actions followed
to their end."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conveyor.cli.bulk import parse_time
from conveyor.cli.main import cli
from conveyor.client import Client
from conveyor.core.states import TaskState
from tests.helpers.live_server import LiveServer
from tests.integration.test_bulk_actions import failed_tasks


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "operate.db").start()
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer) -> Iterator[Client]:
    with Client(live.url) as c:
        yield c


def run(live: LiveServer, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), env={"CONVEYOR_URL": live.url})
    assert result.exit_code == code, result.output
    return result


def test_pause_and_resume_a_queue(live: LiveServer, client: Client) -> None:
    out = run(live, "pause", "emails", "--until", "+1h").stdout
    assert re.fullmatch(r"queue emails paused until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\n", out)
    [pause] = client.pauses()
    assert (pause.scope.value, pause.name) == ("queue", "emails")
    assert pause.until is not None
    assert timedelta(minutes=59) < pause.until - datetime.now(UTC) <= timedelta(hours=1)
    listed = json.loads(run(live, "pauses", "--json").stdout)
    assert [(p["scope"], p["name"]) for p in listed] == [("queue", "emails")]
    assert run(live, "resume", "emails").stdout == "queue emails resumed\n"
    assert client.pauses() == []
    again = run(live, "resume", "emails", code=1)
    assert "queue emails was not paused" in again.stderr


def test_pause_everything_and_a_schedule(live: LiveServer, client: Client) -> None:
    run(live, "schedule", "add", "nightly", "0 3 * * *", "echo")
    assert run(live, "pause", "--all").stdout == "every queue paused until resumed\n"
    run(live, "pause", "--schedule", "nightly")
    rows = run(live, "pauses").stdout.splitlines()
    assert rows[0].split("\t") == ["scope", "name", "paused at", "until"]
    assert [r.split("\t")[:2] for r in rows[1:]] == [["all", ""], ["schedule", "nightly"]]
    run(live, "resume", "--all")
    run(live, "resume", "--schedule", "nightly")
    assert client.pauses() == []


def test_pause_needs_a_queue_or_all_not_both(live: LiveServer) -> None:
    assert "name a QUEUE" in run(live, "pause", code=2).output
    assert "--all pauses every queue" in run(live, "pause", "q", "--all", code=2).output
    assert "--until" in run(live, "pause", "q", "--until", "soon", code=2).output


def test_workers_drain_by_queue_and_stop_by_id(live: LiveServer, client: Client) -> None:
    a = live.engine.register_worker(name="wa", host="h1", pid=1, concurrency=1, queues=["a"])
    b = live.engine.register_worker(name="wb", host="h2", pid=2, concurrency=1, queues=["b"])
    told = json.loads(run(live, "workers", "drain", "--queue", "a", "--json").stdout)
    assert [w["id"] for w in told] == [a.id]
    states = {w.id: w.state for w in client.workers()}
    assert states[a.id] == "draining" and states[b.id] == "alive"
    rows = run(live, "workers", "stop", b.id).stdout.splitlines()
    assert rows[0].split("\t")[:3] == ["id", "name", "host"]
    assert rows[1].split("\t")[:3] == [b.id, "wb", "h2"]
    assert {w.id: w.state for w in client.workers()}[b.id] == "draining"
    assert "no live worker matched" in run(live, "workers", "drain", "--host", "nowhere").stderr
    assert "name workers by ID" in run(live, "workers", "drain", code=2).output
    # The list is still `conveyor workers`.
    assert {r.split("\t")[1] for r in run(live, "workers").stdout.splitlines()[1:]} == {"wa", "wb"}


def cancelled(client: Client, queue: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        task = client.submit("echo", i, queue=queue)
        client.cancel(task.id)
        ids.append(task.id)
    return ids


def test_retry_by_filter_dry_run_then_for_real(live: LiveServer, client: Client) -> None:
    mine = cancelled(client, "q", 5)
    others = cancelled(client, "other", 2)
    waiting = client.submit("echo", "x", queue="q")
    dry = run(live, "retry", "--state", "cancelled", "--queue", "q", "--dry-run").stdout
    assert dry.splitlines()[0] == "would retry 5 of 5 matching task(s) (cancelled 5)"
    assert all(client.get(t).state is TaskState.CANCELLED for t in mine), (
        "a dry run changes nothing"
    )
    done = run(live, "retry", "--state", "cancelled", "--queue", "q")
    assert done.stdout.startswith("retried 5 of 5 matching task(s), 0 skipped, in "), done.output
    assert all(client.get(t).state is TaskState.QUEUED for t in mine)
    assert all(client.get(t).state is TaskState.CANCELLED for t in others)
    # A whole queue, as JSON: the queued tasks are cancelled, none is skipped.
    answer = json.loads(run(live, "cancel", "--queue", "q", "--json").stdout)
    assert (answer["done"], answer["changed"], answer["action"]) == (True, 6, "cancel")
    assert client.get(waiting.id).state is TaskState.CANCELLED


def test_rm_by_filter_without_waiting_then_follow_it(live: LiveServer, client: Client) -> None:
    others = cancelled(client, "other", 3)
    bulk_id = run(live, "rm", "--state", "cancelled", "--queue", "other", "--no-wait").stdout
    bulk_id = bulk_id.strip()
    assert bulk_id
    answer = json.loads(run(live, "bulk", bulk_id, "--wait", "--json").stdout)
    assert (answer["id"], answer["done"], answer["changed"]) == (bulk_id, True, 3)
    assert client.list(queue="other").tasks == []
    shown = run(live, "bulk", bulk_id).stdout
    assert shown.startswith("delete done: removed 3, skipped 0, of 3 matching"), shown
    assert len(others) == 3


def test_one_id_is_still_the_single_task_operation(live: LiveServer, client: Client) -> None:
    [task_id] = cancelled(client, "q", 1)
    assert run(live, "retry", task_id).stdout == f"{task_id} queued\n"
    several = json.loads(run(live, "cancel", task_id, "no-such-task", "--json").stdout)
    assert several["action"] == "cancel" and several["changed"] == 1
    assert "name a TASK_ID" in run(live, "retry", code=2).output


def test_relative_times_reach_into_the_past() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert parse_time("-2h", now) == now - timedelta(hours=2)
    assert parse_time("+30m", now) == now + timedelta(minutes=30)
    assert parse_time("2026-12-01T00:00:00", now) == datetime(2026, 12, 1, tzinfo=UTC)


def test_why_says_what_a_task_waits_for(live: LiveServer, client: Client) -> None:
    first = client.submit("echo", "first", queue="nobody-serves")
    then = client.submit("echo", "then", depends_on=[first.id], queue="nobody-serves")

    out = run(live, "why", then.id).stdout
    assert out.splitlines()[0] == f"{then.id} is pending"
    assert re.search(r"^  dependencies  .*" + re.escape(first.id), out, re.MULTILINE), out
    answer = json.loads(run(live, "why", first.id, "--json").stdout)
    assert answer["state"] == "queued" and answer["unschedulable"] is True
    assert [r["code"] for r in answer["reasons"]] == ["no_worker"]
    missing = run(live, "why", "no-such-task", code=1)
    assert "no-such-task" in missing.stderr


def test_failures_are_grouped_by_error_and_a_group_retried_by_its_filter(
    live: LiveServer, client: Client
) -> None:
    boom = failed_tasks(live.engine, 3, queue="jobs", error="boom")
    (other,) = failed_tasks(live.engine, 1, queue="jobs", error="other")

    answer = client.failures()
    assert [(g.error, g.count) for g in answer.groups] == [("boom", 3), ("other", 1)]
    rows = [row.split("\t") for row in run(live, "failures").stdout.splitlines()]
    assert rows[0] == ["count", "last finished", "error"]
    assert [(r[0], r[2]) for r in rows[1:]] == [("3", "boom"), ("1", "other")]
    as_json = json.loads(run(live, "failures", "--json").stdout)
    assert as_json["groups"][0]["filter"] == answer.groups[0].filter

    retried = client.wait_bulk(client.retry_all(**answer.groups[0].filter), timeout_s=30)  # type: ignore[arg-type]
    assert retried.changed == 3
    assert {client.get(task_id).state for task_id in boom} == {TaskState.QUEUED}
    assert client.get(other).state is TaskState.FAILED


def test_limits_set_listed_taken_by_a_submit_and_removed(live: LiveServer, client: Client) -> None:
    out = run(live, "limit", "set", "db", "--concurrency", "2", "--rate", "10", "--per-s", "60")
    assert out.stdout == "limit db: at most 2 running, at most 10 started per 60 s per key\n"
    submitted = json.loads(
        run(live, "submit", "echo", "x", "--limit", "db", "--require", "zone=eu", "--json").stdout
    )
    task = client.get(submitted["id"])
    assert (task.limits, task.require) == (["db"], {"zone": "eu"})
    rows = [r.split("\t") for r in run(live, "limit", "list").stdout.splitlines()]
    assert rows[0] == ["name", "rule", "running", "held"]
    assert [row[:3] for row in rows[1:]] == [
        ["db", "at most 2 running, at most 10 started per 60 s per key", "0"]
    ]
    assert run(live, "limit", "rm", "db").stdout == "limit db removed\n"
    assert client.limits() == []
    # 0, as the API allows it: a limit that holds its tasks back until it is raised again.
    out = run(live, "limit", "set", "frozen", "--concurrency", "0")
    assert out.stdout == "limit frozen: holds every task back\n"
    assert client.limit("frozen").concurrency == 0
    refused = run(live, "limit", "set", "Bad Name!", "--concurrency", "1", code=1)
    assert "field 'limit'" in refused.stderr
