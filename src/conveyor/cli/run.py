"""`conveyor run FILE`: run a job file to the end in this process, with a live progress display."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from conveyor.cli.options import (
    allow_module_option,
    allow_network_option,
    allow_option,
    files_root_option,
    handler_policy,
    store_options,
    var_option,
)
from conveyor.cli.output import Cell, Column, print_table
from conveyor.cli.output import console as output_console
from conveyor.clock import SystemClock
from conveyor.core.models import Task
from conveyor.core.states import TaskState
from conveyor.embedded import Progress as RunProgress
from conveyor.embedded import RunSummary, Scheduler
from conveyor.errors import ConveyorError
from conveyor.jobfile import load_job_file
from conveyor.store.base import Durability

STATE_STYLE = {
    TaskState.SUCCEEDED: "green",
    TaskState.FAILED: "red",
    TaskState.TIMED_OUT: "red",
    TaskState.CANCELLED: "yellow",
    TaskState.RUNNING: "cyan",
}


@click.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_options
@click.option("-c", "--concurrency", default=10, show_default=True, help="Jobs run at once.")
@click.option("--fresh", is_flag=True, help="Start from an empty database (deletes --db first).")
@allow_option
@allow_module_option
@allow_network_option
@files_root_option("Directory the file handlers work in  [default: the current directory]")
@var_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON, no display.")
def run_command(
    file: Path,
    db: str,
    durability: str,
    accept_wal_loss: bool,
    concurrency: int,
    fresh: bool,
    allow: tuple[str, ...],
    allow_modules: tuple[str, ...],
    allow_networks: tuple[str, ...],
    files_root: str | None,
    variables: dict[str, str],
    as_json: bool,
) -> None:
    """Run the job file FILE here, to the end. Exits 1 if any job did not succeed.

    Running the same file again on the same --db continues where it stopped. The file
    handlers work in --files-root (default: the current directory): this runs your own job
    file, like the Python modules it may import.
    """
    console = output_console(stderr=as_json)
    try:
        job_file = load_job_file(file, now=SystemClock().now(), variables=variables)
    except ConveyorError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(db + suffix).unlink(missing_ok=True)
    root = files_root or os.path.realpath(os.getcwd())
    policy = handler_policy(allow, allow_modules or ("*",), root, allow_networks)
    try:
        scheduler = Scheduler(
            db,
            concurrency=concurrency,
            policy=policy,
            durability=Durability(durability),
            accept_wal_loss=accept_wal_loss,
        )
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    with scheduler:
        for limit in job_file.limits:
            scheduler.engine.set_limit(limit)
        scheduler.add_all(job_file.specs)
        summary = _run_with_display(scheduler, console, job_file.name, quiet=as_json)
        tasks = {t.name: t for t in scheduler.tasks()}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": summary.ok,
                    "counts": {s.value: n for s, n in summary.counts.items()},
                    "tasks": {
                        name: {
                            "id": t.id,
                            "state": t.state.value,
                            "result": t.result,
                            "error": t.error,
                        }
                        for name, t in tasks.items()
                    },
                }
            )
        )
    else:
        _print_table([tasks[s.name] for s in job_file.specs if s.name in tasks])
        for task in summary.stuck:
            console.print(
                f"[yellow]stuck:[/] {task.name or task.id} needs {task.resources}, more than this scheduler has"
            )
        console.print(
            f"{'[green]all jobs succeeded' if summary.ok else '[red]some jobs did not succeed'}[/] in {summary.elapsed_s:.2f}s"
        )
    if not summary.ok:
        raise SystemExit(1)


def _run_with_display(
    scheduler: Scheduler, console: Console, title: str, *, quiet: bool
) -> RunSummary:
    if quiet:
        return scheduler.run_until_complete()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        job = bar.add_task(title, total=None, states="")

        def show(progress: RunProgress) -> None:
            states = "  ".join(f"{s.value} {n}" for s, n in sorted(progress.counts.items()) if n)
            bar.update(job, total=progress.total, completed=progress.done, states=states)

        return scheduler.run_until_complete(show)


def _print_table(tasks: list[Task]) -> None:
    rows: list[list[Cell]] = [
        [
            t.name or t.id,
            Text(t.state.value, STATE_STYLE.get(t.state, "white")),
            str(t.attempts),
            t.error if t.error else json.dumps(t.result),
        ]
        for t in tasks
    ]
    print_table(["name", "state", Column("attempts", justify="right"), "result / error"], rows)
