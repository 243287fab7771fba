"""`conveyor schedule add|list|rm`: cron schedules that submit a task at every firing."""

from __future__ import annotations

from typing import Any

import click

from conveyor.cli.output import Column, local_time, print_table
from conveyor.cli.remote import connect, print_json, remote_command
from conveyor.cli.taskspec import build_spec, task_options
from conveyor.core.schedules import Misfire


@click.group("schedule")
def schedule_group() -> None:
    """Cron schedules: submit a task at every firing of a cron expression (fields: minute hour
    day-of-month month day-of-week, and an optional sixth, second, last)."""


@schedule_group.command("add")
@click.argument("name")
@click.argument("cron", metavar="CRON")
@click.argument("handler")
@click.argument("args", nargs=-1)
@task_options
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA timezone of CRON.")
@click.option(
    "--misfire",
    type=click.Choice([m.value for m in Misfire]),
    default=Misfire.ONCE.value,
    show_default=True,
    help="Firings missed while no server ran: run one (once), none (skip) or each (all).",
)
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@remote_command
def add_command(
    name: str,
    cron: str,
    handler: str,
    args: tuple[str, ...],
    timezone: str,
    misfire: str,
    replace: bool,
    server: str,
    token: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Store schedule NAME: at every firing of CRON, submit HANDLER with ARGS, as `conveyor
    submit` would.

    \b
    CRON's fields, in this order:  minute hour day-of-month month day-of-week [second]
      "*/5 * * * *"      every 5 minutes
      "0 2 * * mon-fri"  at 02:00 on weekdays
      "* * * * * */30"   every 30 seconds: the optional sixth field, seconds, comes LAST
    Each field: *, */STEP, N, A-B, A-B/STEP, or a comma-separated list of them.
    """
    task = build_spec(handler, args, options)
    with connect(server, token) as client:
        schedule = client.add_schedule(
            name, cron, task, timezone=timezone, misfire=Misfire(misfire), replace=replace
        )
    if as_json:
        print_json(schedule)
    else:
        click.echo(f"{name}: next firing {local_time(schedule.next_run_at)}")


@schedule_group.command("list")
@remote_command
def list_command(server: str, token: str | None, as_json: bool) -> None:
    """List schedules with their next firing."""
    with connect(server, token) as client:
        schedules = client.schedules()
    if as_json:
        print_json(schedules)
        return
    columns: list[Column | str] = [
        "name", "cron", "timezone", "handler", "next firing", Column("fired", justify="right"),
        "misfire", Column("last error", wrap=True),
    ]  # fmt: skip
    rows = [
        [
            s.spec.name, s.spec.cron, s.spec.timezone, s.spec.task.handler,
            local_time(s.next_run_at), str(s.fired), s.spec.misfire.value, s.last_error or "",
        ]
        for s in schedules
    ]  # fmt: skip
    print_table(columns, rows)


@schedule_group.command("rm")
@click.argument("name")
@remote_command
def rm_command(name: str, server: str, token: str | None, as_json: bool) -> None:
    """Remove schedule NAME (tasks it already submitted stay)."""
    with connect(server, token) as client:
        client.remove_schedule(name)
    if as_json:
        print_json({"name": name, "removed": True})
    else:
        click.echo(f"{name} removed")
