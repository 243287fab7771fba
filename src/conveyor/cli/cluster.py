"""Commands about the whole system: workers, status, apply."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.cli.options import var_option
from conveyor.cli.remote import connect, print_json, remote_command
from conveyor.clock import SystemClock
from conveyor.errors import ConveyorError
from conveyor.jobfile import load_job_file


@click.command("workers")
@remote_command
def workers_command(server: str, token: str | None, as_json: bool) -> None:
    """List registered workers."""
    with connect(server, token) as client:
        workers = client.workers()
    if as_json:
        print_json(workers)
        return
    table = Table()
    for column in ("id", "name", "host", "state", "slots", "running", "queues", "last seen"):
        table.add_column(column, no_wrap=True, min_width=32 if column == "id" else None)
    now = datetime.now(UTC)
    for w in workers:
        table.add_row(
            w.id, w.name, w.host, w.state, str(w.concurrency), str(len(w.running)),
            ",".join(w.queues), f"{(now - w.last_seen_at).total_seconds():.1f}s ago",
        )  # fmt: skip
    Console().print(table)


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
    table = Table(
        title=f"workers alive: {status.workers_alive} of {status.workers_total}   finished in the last minute: {status.finished_last_minute}"
    )
    table.add_column("queue", no_wrap=True)
    for state in states:
        table.add_column(state, justify="right", no_wrap=True)
    for queue, counts in sorted(status.queues.items()):
        table.add_row(queue, *(str(counts.get(s, 0)) for s in states))
    table.add_row("[bold]all", *(f"[bold]{status.counts.get(s, 0)}" for s in states))
    Console().print(table)


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
        with Progress(*columns, console=Console(stderr=as_json)) as bar:
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
