"""`conveyor cancel|retry|rm`: one task by id, or every task a filter selects (a bulk action).

`conveyor retry ID` is the single-task operation it always was. Several ids, or any filter
option (`conveyor retry --state failed --queue emails`), make it a bulk action: the server
changes the tasks in the background, in chunks, and the command follows it (GET /bulk/{id})
with a progress bar on stderr until it is done; `--no-wait` prints its id and returns
(`conveyor bulk ID` looks at it later). `--dry-run` changes nothing and says how many tasks
would change, by state, with a sample. On a terminal, a bulk action asks first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from conveyor.api.schemas import BulkOut, TaskOut
from conveyor.cli.output import console, local_time, on_terminal, print_table
from conveyor.cli.remote import connect, parse_pairs, print_json, remote_command
from conveyor.client import Client
from conveyor.clock import SystemClock
from conveyor.core.states import Reason, TaskState
from conveyor.jobfile import parse_start_time

DONE_VERB = {"retry": "retried", "cancel": "cancelled", "delete": "removed"}


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO time (UTC without a zone), or relative to now: -2h (two hours ago), +30m."""
    stripped = text.strip()
    if stripped.startswith("-"):
        ahead = parse_start_time("+" + stripped[1:], now)
        return now - (ahead - now)
    return parse_start_time(stripped, now)


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, SystemClock().now())
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; or -2h for two hours ago", ctx, param) from None


FILTERS = (
    click.option(
        "-s", "--state", "states", multiple=True,
        type=click.Choice([s.value for s in TaskState]), help="In any of these states (repeatable).",
    ),
    click.option("-q", "--queue", default=None, help="In this queue."),
    click.option("--name", default=None, help="With this name."),
    click.option("--handler", default=None, help="Of this handler."),
    click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="With this label (repeatable: all of them)."),
    click.option("--reason", type=click.Choice([r.value for r in Reason]), default=None, help="With this reason."),
    click.option("--error", default=None, metavar="TEXT", help="Whose error message is exactly TEXT."),
    click.option("--created-after", callback=_time, metavar="TIME", help="Created at or after TIME (ISO, or -2h)."),
    click.option("--created-before", callback=_time, metavar="TIME", help="Created before TIME."),
    click.option("--finished-after", callback=_time, metavar="TIME", help="Finished at or after TIME."),
    click.option("--finished-before", callback=_time, metavar="TIME", help="Finished before TIME."),
    click.option("--dry-run", is_flag=True, help="Change nothing: say how many tasks would change."),
    click.option("--no-wait", is_flag=True, help="Start the bulk action and print its id; do not follow it."),
    click.option("-y", "--yes", is_flag=True, help="Do not ask first (a terminal asks before a bulk action)."),
    click.option("--key", default=None, help="Idempotency key: asking again with it resumes that action."),
)  # fmt: skip


def selection(ids: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """The filter the options ask for, as `Client.retry_all(**selection)` takes it."""
    where: dict[str, Any] = {}
    if ids:
        where["ids"] = list(ids)
    if options["states"]:
        where["state"] = list(options["states"])
    for name in ("queue", "name", "handler", "reason", "error"):
        if options[name] is not None:
            where[name] = options[name]
    if options["labels"]:
        where["labels"] = parse_pairs(options["labels"], "--label")
    for name in ("created_after", "created_before", "finished_after", "finished_before"):
        if options[name] is not None:
            where[name] = options[name]
    return where


def _task_action(name: str, action: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("task_ids", nargs=-1, metavar="[TASK_ID]...")
    @remote_command
    def command(
        task_ids: tuple[str, ...], server: str, token: str | None, as_json: bool, **options: Any
    ) -> None:
        where = selection(task_ids, options)
        if not where:
            raise click.UsageError("name a TASK_ID, or select tasks with filter options")
        with connect(server, token) as client:
            if list(where) == ["ids"] and len(task_ids) == 1 and not options["dry_run"]:
                _one(client, action, task_ids[0], as_json)
                return
            run_bulk(client, action, where, options, as_json)

    for option in FILTERS:  # on a Command, each option is appended to its params
        command = option(command)
    return command


def _one(client: Client, action: str, task_id: str, as_json: bool) -> None:
    one: Callable[[str], TaskOut | None] = {
        "retry": client.retry, "cancel": client.cancel, "delete": client.delete,
    }[action]  # fmt: skip
    task = one(task_id)
    if as_json:
        print_json(task if task is not None else {"id": task_id, "removed": True})
    else:
        click.echo(f"{task_id} {task.state.value if task is not None else 'removed'}")


def run_bulk(
    client: Client, action: str, where: dict[str, Any], options: dict[str, Any], as_json: bool
) -> None:
    start: Callable[..., BulkOut] = {
        "retry": client.retry_all, "cancel": client.cancel_all, "delete": client.delete_all,
    }[action]  # fmt: skip
    if options["dry_run"]:
        _print_dry_run(start(dry_run=True, **where), as_json)
        return
    if not options["yes"] and on_terminal() and sys.stdin.isatty():
        estimate = start(dry_run=True, **where)
        if estimate.estimate == 0:
            click.echo(f"no task to {action}: {estimate.total} match, none in a state it changes")
            return
        click.confirm(f"{action} {estimate.estimate} task(s)?", abort=True, err=True)
    bulk = start(key=options["key"], **where)
    if options["no_wait"]:
        print_json(bulk) if as_json else click.echo(bulk.id)
        return
    bulk = follow(client, bulk)
    _print_done(bulk, as_json)


def follow(client: Client, bulk: BulkOut) -> BulkOut:
    """Wait for the bulk action to end, with a progress bar on stderr."""
    if bulk.done:
        return bulk
    columns = (
        TextColumn(f"[bold]{bulk.action.value}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[skipped]} skipped"),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console(stderr=True), transient=on_terminal(stderr=True)
    ) as bar:
        row = bar.add_task("bulk", total=max(bulk.estimate, 1), skipped=0)

        def show(now: BulkOut) -> None:
            bar.update(
                row,
                completed=now.changed,
                total=max(now.estimate, now.changed, 1),
                skipped=now.skipped,
            )

        return client.wait_bulk(bulk, on_progress=show)


def _print_done(bulk: BulkOut, as_json: bool) -> None:
    if as_json:
        print_json(bulk)
        return
    verb = DONE_VERB.get(bulk.action.value, bulk.action.value)
    took = (bulk.finished_at or bulk.updated_at) - bulk.created_at
    click.echo(
        f"{verb} {bulk.changed} of {bulk.total} matching task(s), {bulk.skipped} skipped, "
        f"in {max(took, timedelta(0)).total_seconds():.1f}s  (bulk {bulk.id})"
    )
    if bulk.error:
        click.echo(f"last error: {bulk.error}", err=True)


def _print_dry_run(bulk: BulkOut, as_json: bool) -> None:
    if as_json:
        print_json(bulk)
        return
    states = ", ".join(f"{state} {n}" for state, n in sorted(bulk.by_state.items()) if n)
    click.echo(
        f"would {bulk.action.value} {bulk.estimate} of {bulk.total} matching task(s)"
        + (f" ({states})" if states else "")
    )
    if bulk.sample:
        print_table(
            ["id", "name", "handler", "queue", "state", "error"],
            [
                [t.id, t.name or "", t.handler, t.queue, t.state.value, t.error or ""]
                for t in bulk.sample
            ],
        )


@click.command("bulk")
@click.argument("bulk_id")
@click.option("-w", "--wait", is_flag=True, help="Follow it until it is done.")
@remote_command
def bulk_command(bulk_id: str, wait: bool, server: str, token: str | None, as_json: bool) -> None:
    """Show a bulk action's progress (started by retry, cancel or rm with a filter)."""
    with connect(server, token) as client:
        bulk = client.bulk(bulk_id)
        if wait:
            bulk = follow(client, bulk)
    if as_json:
        print_json(bulk)
        return
    verb = DONE_VERB.get(bulk.action.value, bulk.action.value)
    click.echo(
        f"{bulk.action.value} {bulk.state.value}: {verb} {bulk.changed}, skipped {bulk.skipped}, "
        f"of {bulk.total} matching (estimate {bulk.estimate}); started {local_time(bulk.created_at)}"
        + (f", finished {local_time(bulk.finished_at)}" if bulk.finished_at else "")
    )


cancel_command = _task_action(
    "cancel", "cancel",
    "Cancel a pending, queued or running task (a running one is killed), or every such task "
    "the filter options select.",
)  # fmt: skip
retry_command = _task_action(
    "retry", "retry",
    "Run a failed, timed-out or cancelled task again, or every such task the filter options "
    "select: `conveyor retry --state failed --queue emails`.",
)  # fmt: skip
rm_command = _task_action(
    "rm", "delete",
    "Remove a task that is not running, or every such task the filter options select.",
)  # fmt: skip
