"""Commands on tasks: submit, tasks, task, result, cancel, retry, rm."""

from __future__ import annotations

import json
import math
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from conveyor.api.schemas import ResultOut, TaskDetail, TaskOut
from conveyor.cli.remote import (
    connect,
    parse_pairs,
    print_json,
    remote_command,
    shorten,
)
from conveyor.cli.taskspec import build_spec, task_options
from conveyor.client import Client
from conveyor.clock import SystemClock
from conveyor.core.states import TaskState
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
    table = Table()
    for column in ("id", "name", "handler", "queue", "prio", "state", "tries", "result / error"):
        table.add_column(
            column, no_wrap=True, overflow="ellipsis", min_width=5 if column != "id" else 32
        )
    for t in page.tasks:
        table.add_row(
            t.id,
            t.name or "",
            t.handler,
            t.queue,
            str(t.priority),
            _state(t.state),
            str(t.attempts),
            _outcome(t),
        )
    Console().print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


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
    console = Console()
    fields = {
        "id": task.id, "name": task.name, "handler": task.handler, "state": _state(task.state),
        "reason": task.reason.value if task.reason else "", "queue": task.queue,
        "priority": task.priority, "args": json.dumps(task.args), "kwargs": json.dumps(task.kwargs),
        "depends on": ", ".join(task.depends_on), "dependents": ", ".join(task.dependents),
        "attempts": f"{task.attempts} (retries used {task.retries_used} of {task.max_retries})",
        "result": json.dumps(task.result), "error": task.error or "",
        "created": task.created_at.isoformat(), "finished": task.finished_at.isoformat() if task.finished_at else "",
    }  # fmt: skip
    for key, value in fields.items():
        console.print(f"[bold]{key:>10}[/]  {value}")
    if task.attempt_log:
        table = Table(title="attempts")
        for column in ("#", "worker", "started", "finished", "outcome", "error"):
            table.add_column(column)
        for a in task.attempt_log:
            table.add_row(
                str(a.number), a.worker_id or "", a.started_at.isoformat(timespec="milliseconds"),
                a.finished_at.isoformat(timespec="milliseconds") if a.finished_at else "",
                a.outcome.value if a.outcome else "running", shorten(a.error or ""),
            )  # fmt: skip
        console.print(table)
    last = task.attempt_log[-1] if task.attempt_log else None
    if last and last.traceback:
        console.print("[bold]traceback[/]\n" + last.traceback)
    if last and (last.stdout_tail or last.stderr_tail):
        console.print(f"[bold]stdout[/]\n{last.stdout_tail}\n[bold]stderr[/]\n{last.stderr_tail}")


def _action(name: str, verb: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("task_id")
    @remote_command
    def command(task_id: str, server: str, token: str | None, as_json: bool) -> None:
        with connect(server, token) as client:
            task: TaskOut | None = getattr(client, verb)(task_id)
        if as_json and task is not None:
            print_json(task)
        else:
            click.echo(f"{task_id} {task.state.value if task is not None else 'removed'}")

    return command


cancel_command = _action(
    "cancel", "cancel", "Cancel a pending, queued or running task (a running one is killed)."
)
retry_command = _action("retry", "retry", "Run a failed, timed-out or cancelled task again.")
rm_command = _action("rm", "delete", "Remove a task that is not running.")


def _state(state: TaskState) -> str:
    return f"[{STATE_STYLE.get(state.value, 'white')}]{state.value}[/]"


def _outcome(t: TaskOut) -> str:
    if t.error:
        return shorten(t.error, 40)
    return "" if t.result is None else shorten(json.dumps(t.result), 40)
