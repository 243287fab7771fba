"""The CLI in a pipe and in a script: whole rows as tab-separated values when stdout is not a
terminal, readable local times, no `None` for what a task does not have, `--json` on every
command that prints data. CliRunner's stdout is not a terminal, as a pipe's is not."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conveyor.cli.main import cli
from conveyor.cli.output import duration, local_time
from conveyor.client import Client
from conveyor.core.states import Outcome
from conveyor.engine.reports import Report
from tests.helpers.live_server import LiveServer

LONG = "a-worker-name-long-enough-that-an-80-column-table-would-cut-it-short"
LOCAL_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "output.db").start()
    yield server
    server.stop()


def run(live: LiveServer, *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env={"CONVEYOR_URL": live.url, "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result


def tsv(text: str) -> list[dict[str, str]]:
    header, *rows = text.splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


def test_workers_in_a_pipe_are_whole_rows_of_tab_separated_values(live: LiveServer) -> None:
    live.engine.register_worker(
        name=LONG, host=f"{LONG}.example", pid=1, concurrency=2, queues=["default", "images"]
    )
    result = run(live, "workers")
    assert "…" not in result.stdout
    [row] = tsv(result.stdout)
    assert row["name"] == LONG and row["host"] == f"{LONG}.example"
    assert row["state"] == "alive" and row["queues"] == "default,images"
    assert re.fullmatch(r"\d+ ms ago|\d+\.\d s ago", row["last seen"]), row


def test_tasks_in_a_pipe_keep_whole_errors_and_show_local_times(live: LiveServer) -> None:
    error = "boom\tat step 2\n" + "x" * 300
    with Client(live.url) as client:
        task = client.submit("echo", "hello", max_retries=0)
    worker = live.engine.register_worker(
        name="w", host="h", pid=1, concurrency=1, queues=["default"]
    )
    [lease] = live.engine.lease(worker.id, 1)
    live.engine.report(worker.id, [Report(task.id, lease.token, Outcome.FAILED, error=error)])
    result = run(live, "tasks")
    [row] = tsv(result.stdout)
    assert row["id"] == task.id and row["state"] == "failed"
    assert row["result / error"] == "boom\\tat step 2\\n" + "x" * 300, "whole, escaped"
    assert re.fullmatch(LOCAL_TIME + r" \S+", row["created"]), row["created"]


def test_task_shows_what_the_task_has_and_local_times(live: LiveServer) -> None:
    with Client(live.url) as client:
        task = client.submit("echo", "hello")
    out = run(live, "task", task.id).stdout
    assert "None" not in out and "null" not in out, out
    assert not re.search(r"^\s*name\s", out, re.M), "a task without a name shows no name"
    created = re.search(r"^\s*created  (.*)$", out, re.M)
    assert created and re.fullmatch(LOCAL_TIME + r" \S+", created.group(1)), out
    assert not re.search(r"\d\dT\d\d|\+00:00", out), "no ISO time"


def test_json_keeps_iso_times(live: LiveServer) -> None:
    with Client(live.url) as client:
        task = client.submit("echo", "hello", name="named")
    answer = json.loads(run(live, "task", task.id, "--json").stdout)
    assert answer["name"] == "named"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", answer["created_at"])


def test_every_command_that_prints_data_has_json(live: LiveServer) -> None:
    with Client(live.url) as client:
        task = client.submit("echo", "hello")
        done = client.submit("echo", "bye")
        client.cancel(done.id)
    run(live, "schedule", "add", "nightly", "0 3 * * *", "echo")
    for args in (
        ["tasks"], ["task", task.id], ["workers"], ["status"], ["schedule", "list"],
        ["cancel", task.id], ["retry", task.id], ["result", done.id],
    ):  # fmt: skip
        result = CliRunner().invoke(cli, [*args, "--json"], env={"CONVEYOR_URL": live.url})
        assert result.exit_code in (0, 1), result.output
        json.loads(result.stdout)
    removed = json.loads(run(live, "rm", done.id, "--json").stdout)
    assert removed == {"id": done.id, "removed": True}
    gone = json.loads(run(live, "schedule", "rm", "nightly", "--json").stdout)
    assert gone == {"name": "nightly", "removed": True}


def test_status_in_a_pipe_puts_its_title_on_stderr(live: LiveServer) -> None:
    with Client(live.url) as client:
        client.submit("echo", "hello", queue="emails")
    result = run(live, "status")
    rows = tsv(result.stdout)
    assert [r["queue"] for r in rows] == ["emails", "all"]
    assert rows[0]["queued"] == "1"
    assert "workers alive: 0 of 0" in result.stderr


def test_local_time_and_duration_read_as_people_write_them() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 7, 10, 0, 3, 456_000, tzinfo=UTC)
    assert re.fullmatch(LOCAL_TIME + r" \S+", local_time(moment))
    assert re.fullmatch(LOCAL_TIME + r"\.456 \S+", local_time(moment, milliseconds=True))
    assert local_time(None) == ""
    assert [duration(s) for s in (0.012, 12.49, 200, 7500)] == [
        "12 ms", "12.5 s", "3 min 20 s", "2 h 05 min",
    ]  # fmt: skip
