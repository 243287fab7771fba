"""Commands on tasks: submit, tasks, task, result, why, failures (cancel, retry and rm:
conveyor.cli.bulk)."""

from __future__ import annotations

import json
import math
from typing import Any

import click
from rich.text import Text

from conveyor.api.schemas import ResultOut, TaskDetail, TaskOut
from conveyor.cli.output import Cell, Column, console, duration, local_time, note, print_table
from conveyor.cli.remote import (
    connect,
    parse_pairs,
    print_json,
    remote_command,
)
from conveyor.cli.taskspec import build_spec, task_options
from conveyor.client import Client
from conveyor.clock import SystemClock
from conveyor.core.states import TaskState
from conveyor.core.why import WhyAnswer
from conveyor.jobfile import parse_start_time

STATE_STYLE = {
    "succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow",
    "running": "cyan", "queued": "blue", "pending": "white",
}  # fmt: skip


@click.command("submit")
@click.argument("handler")
@click.argument("args", nargs=-1)
@task_options
@click.option(
    "--at",
    "at",
    default=None,
    metavar="TIME",
    help="Start no earlier than TIME (ISO, or +30s/+5m/+2h).",
)
@click.option(
    "--key",
    default=None,
    help="Idempotency key: submitting the same key again returns the first task.",
)
@click.option(
    "-w", "--wait", is_flag=True, help="Wait for the task to finish and print its result."
)
@remote_command
def submit_command(
    handler: str,
    args: tuple[str, ...],
    at: str | None,
    key: str | None,
    wait: bool,
    server: str,
    token: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Submit one task: HANDLER (e.g. sha256, or package.module:function) with ARGS.

    Each ARG is taken as JSON when it parses (42, true, [1,2]) and as text otherwise:
    `conveyor submit sha256 "Hello, World!" --wait` prints the digest.
    """
    try:
        run_at = parse_start_time(at, SystemClock().now()) if at else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    spec = build_spec(handler, args, options, run_at=run_at, key=key)
    with connect(server, token) as client:
        if not wait:
            task = client.submit(spec)
            print_json(task) if as_json else click.echo(task.id)
            return
        outcome = client.run(spec, wait_s=math.inf)  # submit and wait in one request
    _print_result(outcome, as_json)


def _wait(client: Client, task_id: str, wait_s: float | None = None) -> ResultOut:
    """Long-poll until the task finishes, or `wait_s` passes (None: as long as it takes)."""
    return client.result(task_id, timeout_s=math.inf if wait_s is None else wait_s)


def _print_result(outcome: ResultOut, as_json: bool) -> None:
    if as_json:
        print_json(outcome)
    elif outcome.state is TaskState.SUCCEEDED:
        click.echo(
            outcome.result if isinstance(outcome.result, str) else json.dumps(outcome.result)
        )
    elif outcome.done:
        click.echo(
            f"task {outcome.id} {outcome.state.value}: {outcome.error or outcome.reason}", err=True
        )
    else:
        click.echo(f"task {outcome.id} is still {outcome.state.value}", err=True)
    if outcome.state is not TaskState.SUCCEEDED:
        raise SystemExit(1)


@click.command("result")
@click.argument("task_id")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for the end.",
)
@remote_command
def result_command(
    task_id: str, wait_s: float, server: str, token: str | None, as_json: bool
) -> None:
    """Print a task's result; exit 1 if it did not succeed (or has not finished)."""
    with connect(server, token) as client:
        outcome = _wait(client, task_id, wait_s)
    _print_result(outcome, as_json)


@click.command("tasks")
@click.option(
    "-s", "--state", "states", multiple=True, type=click.Choice([s.value for s in TaskState])
)
@click.option("-q", "--queue", default=None)
@click.option("--name", default=None)
@click.option("--handler", default=None)
@click.option("--label", default=None, help="key=value")
@click.option("-n", "--limit", type=int, default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page (printed at its end).")
@remote_command
def tasks_command(
    states: tuple[str, ...], queue: str | None, name: str | None, handler: str | None,
    label: str | None, limit: int, cursor: str | None, server: str, token: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """List tasks, newest first."""
    with connect(server, token) as client:
        page = client.list(
            state=list(states) or None, queue=queue, name=name, handler=handler,
            labels=parse_pairs((label,), "--label") if label else None, limit=limit, cursor=cursor,
        )  # fmt: skip
    if as_json:
        print_json(page)
        return
    columns = [
        Column("id", min_width=32), Column("name", min_width=5), Column("handler", min_width=5),
        Column("queue", min_width=5), Column("prio", justify="right"), Column("state"),
        Column("tries", justify="right"), Column("created"), Column("result / error"),
    ]  # fmt: skip
    rows: list[list[Cell]] = [
        [
            t.id, t.name or "", t.handler, t.queue, str(t.priority), state_text(t.state),
            str(t.attempts), local_time(t.created_at), _outcome(t),
        ]
        for t in page.tasks
    ]  # fmt: skip
    print_table(columns, rows)
    if page.next_cursor:
        note(f"more: --cursor {page.next_cursor}")


@click.command("task")
@click.argument("task_id")
@remote_command
def task_command(task_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Show one task with its attempts."""
    with connect(server, token) as client:
        task: TaskDetail = client.get(task_id)
    if as_json:
        print_json(task)
        return
    out = console()
    for key, value in task_fields(task).items():
        out.print(Text.assemble((f"{key:>10}", "bold"), "  ", value))
    if task.attempt_log:
        out.print(Text("attempts", "bold"))
        print_table(
            ["#", "worker", "started", "took", "outcome", Column("error", wrap=True)],
            [
                [
                    str(a.number), a.worker_id or "", local_time(a.started_at, milliseconds=True),
                    duration(a.finished_at - a.started_at) if a.finished_at else "",
                    a.outcome.value if a.outcome else "running", a.error or "",
                ]
                for a in task.attempt_log
            ],
        )  # fmt: skip
    last = task.attempt_log[-1] if task.attempt_log else None
    if last and last.traceback:
        out.print(Text("traceback", "bold"))
        out.print(Text(last.traceback))
    if last and (last.stdout_tail or last.stderr_tail):
        out.print(Text.assemble(("stdout", "bold"), "\n", last.stdout_tail or ""))
        out.print(Text.assemble(("stderr", "bold"), "\n", last.stderr_tail or ""))


def task_fields(task: TaskDetail) -> dict[str, str | Text]:
    """One task's fields as `conveyor task` shows them; those it does not have are left out."""
    fields: dict[str, str | Text | None] = {
        "id": task.id, "name": task.name, "handler": task.handler, "state": state_text(task.state),
        "reason": task.reason.value if task.reason else None, "queue": task.queue,
        "priority": str(task.priority), "args": json.dumps(task.args),
        "kwargs": json.dumps(task.kwargs) if task.kwargs else None,
        "depends on": ", ".join(task.depends_on), "dependents": ", ".join(task.dependents),
        "attempts": f"{task.attempts} (retries used {task.retries_used} of {task.max_retries})",
        "result": None if task.result is None else json.dumps(task.result), "error": task.error,
        "created": local_time(task.created_at), "finished": local_time(task.finished_at),
    }  # fmt: skip
    return {key: value for key, value in fields.items() if value}


def state_text(state: TaskState) -> Text:
    return Text(state.value, STATE_STYLE.get(state.value, "white"))


def _outcome(t: TaskOut) -> str:
    if t.error:
        return t.error
    return "" if t.result is None else json.dumps(t.result)


@click.command("why")
@click.argument("task_id")
@remote_command
def why_command(task_id: str, server: str, token: str | None, as_json: bool) -> None:
    """Say why a task is not running: what it waits for, one reason a line, the most immediate
    first (its dependencies, its start time, a pause, a full limit, no worker able to take it,
    busy workers and how many tasks come before it)."""
    with connect(server, token) as client:
        answer: WhyAnswer = client.why(task_id)
    if as_json:
        print_json(answer)
        return
    out = console()
    out.print(Text.assemble((answer.task_id, "bold"), " is ", state_text(answer.state)))
    for reason in answer.reasons:
        out.print(Text.assemble("  ", (reason.code.value, "bold"), "  ", reason.message))
    if answer.unschedulable:
        note("no live worker could ever take it: it waits until one that can registers")


@click.command("failures")
@click.option(
    "--window",
    type=click.IntRange(1, 100_000),
    default=10_000,
    show_default=True,
    help="How many of the newest failed or timed-out tasks to look at.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 500),
    default=50,
    show_default=True,
    help="The most groups to show.",
)
@remote_command
def failures_command(
    window: int, limit: int, server: str, token: str | None, as_json: bool
) -> None:
    """Failed and timed-out tasks grouped by error message, the largest groups first. Retry a
    group with `conveyor retry --state failed --state timed_out --error TEXT`."""
    with connect(server, token) as client:
        answer = client.failures(window=window, limit=limit)
    if as_json:
        print_json(answer)
        return
    print_table(
        [Column("count", justify="right"), "last finished", Column("error", wrap=True)],
        [
            [
                str(group.count),
                local_time(group.last_finished_at),
                "(a dependency failed)" if group.error is None else group.error or "(no message)",
            ]
            for group in answer.groups
        ],
    )
    if not answer.complete:
        note(f"counted among the newest {answer.scanned:,} failures only: --window to see more")
