"""Commands about the whole system: workers, status, apply."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from conveyor.cli.operate import drain_command, stop_command
from conveyor.cli.options import var_option
from conveyor.cli.output import Column, console, duration, print_table
from conveyor.cli.remote import connect, print_json, remote_command
from conveyor.clock import SystemClock
from conveyor.errors import ConveyorError
from conveyor.jobfile import load_job_file


@click.group("workers", invoke_without_command=True)
@remote_command
@click.pass_context
def workers_command(ctx: click.Context, server: str, token: str | None, as_json: bool) -> None:
    """List registered workers; `conveyor workers drain|stop` tells some of them to exit."""
    if ctx.invoked_subcommand is not None:
        return
    with connect(server, token) as client:
        workers = client.workers()
    if as_json:
        print_json(workers)
        return
    columns = [
        Column("id", min_width=32), Column("name"), Column("host"), Column("state"),
        Column("slots", justify="right"), Column("running", justify="right"), Column("queues"),
        Column("last seen"),
    ]  # fmt: skip
    now = datetime.now(UTC)
    rows = [
        [
            w.id, w.name, w.host, w.state, str(w.concurrency), str(len(w.running)),
            ",".join(w.queues), f"{duration(max(now - w.last_seen_at, timedelta(0)))} ago",
        ]
        for w in workers
    ]  # fmt: skip
    print_table(columns, rows)


@click.command("status")
@remote_command
def status_command(server: str, token: str | None, as_json: bool) -> None:
    """Counts of tasks by state and queue, and workers alive."""
    with connect(server, token) as client:
        status = client.status()
    if as_json:
        print_json(status)
        return
    states = ["pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled"]
    title = (
        f"workers alive: {status.workers_alive} of {status.workers_total}   "
        f"finished in the last minute: {status.finished_last_minute}"
    )
    rows = [
        [queue, *(str(counts.get(s, 0)) for s in states)]
        for queue, counts in sorted(status.queues.items())
    ]
    rows.append(["all", *(str(status.counts.get(s, 0)) for s in states)])
    print_table(["queue", *(Column(s, justify="right") for s in states)], rows, title=title)


@click.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-w", "--wait", is_flag=True, help="Show live progress until every task has finished."
)
@var_option
@remote_command
def apply_command(
    file: Path,
    wait: bool,
    variables: dict[str, str],
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Submit the job file FILE to a server, atomically (all tasks or none)."""
    try:
        job_file = load_job_file(file, now=SystemClock().now(), variables=variables)
    except ConveyorError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    with connect(server, token) as client:
        for limit in job_file.limits:
            client.set_limit(
                limit.name, concurrency=limit.concurrency, rate=limit.rate, per_s=limit.per_s
            )
        tasks = client.submit_batch(job_file.specs)
        if not wait:
            if as_json:
                print_json(tasks)
            else:
                for t in tasks:
                    click.echo(f"{t.id}  {t.name or ''}")
            return
        failed = 0
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console(stderr=True)) as bar:
            row = bar.add_task(job_file.name, total=len(tasks), last="")
            for task in tasks:
                outcome = client.result(task.id, timeout_s=math.inf)
                failed += outcome.state.value != "succeeded"
                bar.update(row, advance=1, last=f"{task.name or task.id}: {outcome.state.value}")
        final = [client.get(t.id) for t in tasks]
    if as_json:
        print_json(final)
    else:
        for t in final:
            click.echo(f"{t.state.value:>10}  {t.name or t.id}  {t.error or ''}")
    if failed:
        raise SystemExit(1)


workers_command.add_command(drain_command)
workers_command.add_command(stop_command)
