"""The operator's controls: `conveyor pause|resume|pauses` and `conveyor workers drain|stop`.

Pauses are the server's (conveyor.core.pauses): durable, and they hold on every server of the
database. A paused queue leases nothing more, its running tasks finish and submits go on.
"""

from __future__ import annotations

from datetime import datetime

import click

from conveyor.api.control import PauseOut
from conveyor.api.schemas import WorkerOut
from conveyor.cli.output import local_time, print_table
from conveyor.cli.remote import connect, print_json, remote_command
from conveyor.clock import SystemClock
from conveyor.core.pauses import PauseScope
from conveyor.jobfile import parse_start_time


def _until(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_start_time(value, SystemClock().now())
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


until_option = click.option(
    "--until",
    default=None,
    metavar="TIME",
    callback=_until,
    help="End the pause by itself at TIME (ISO, or +30m/+2h/+1d)  [default: when resumed]",
)


def paused_what(pause: PauseOut) -> str:
    return "every queue" if pause.scope is PauseScope.ALL else f"{pause.scope.value} {pause.name}"


def describe(pause: PauseOut) -> str:
    until = f"until {local_time(pause.until)}" if pause.until else "until resumed"
    return f"{paused_what(pause)} paused {until}"


def _target(name: str | None, everything: bool, schedule: bool) -> None:
    if everything and (name or schedule):
        raise click.UsageError("--all pauses every queue: name no queue or schedule with it")
    if not everything and not name:
        raise click.UsageError("name a QUEUE (or a schedule with --schedule), or pass --all")


@click.command("pause")
@click.argument("name", required=False, metavar="[QUEUE]")
@click.option("--all", "everything", is_flag=True, help="Pause every queue: the whole cluster.")
@click.option("--schedule", is_flag=True, help="NAME is a schedule: it fires no more meanwhile.")
@until_option
@remote_command
def pause_command(
    name: str | None,
    everything: bool,
    schedule: bool,
    until: datetime | None,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Lease nothing more from QUEUE (or from every queue with --all), on every server, until
    `conveyor resume` or --until. Running tasks finish; submits and schedules go on.

    With --schedule, NAME is a schedule, which fires no more until resumed; the firings it misses
    meanwhile follow its misfire policy.
    """
    _target(name, everything, schedule)
    with connect(server, token) as client:
        if everything:
            pause = client.pause_all(until=until)
        elif schedule:
            pause = client.pause_schedule(str(name), until=until)
        else:
            pause = client.pause_queue(str(name), until=until)
    print_json(pause) if as_json else click.echo(describe(pause))


@click.command("resume")
@click.argument("name", required=False, metavar="[QUEUE]")
@click.option("--all", "everything", is_flag=True, help="End `conveyor pause --all`.")
@click.option("--schedule", is_flag=True, help="NAME is a schedule.")
@remote_command
def resume_command(
    name: str | None,
    everything: bool,
    schedule: bool,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Lease from QUEUE again (or end the pause of every queue with --all; queues paused on
    their own stay paused). Exits 1 if it was not paused."""
    _target(name, everything, schedule)
    with connect(server, token) as client:
        if everything:
            answer = client.resume_all()
        elif schedule:
            answer = client.resume_schedule(str(name))
        else:
            answer = client.resume_queue(str(name))
    if as_json:
        print_json(answer)
    elif answer.pause is not None:
        click.echo(f"{paused_what(answer.pause)} resumed")
    else:
        what = "every queue" if everything else f"{'schedule' if schedule else 'queue'} {name}"
        click.echo(f"{what} was not paused", err=True)
    if not answer.resumed:
        raise SystemExit(1)


@click.command("pauses")
@remote_command
def pauses_command(server: str, token: str | None, as_json: bool) -> None:
    """List what is paused now."""
    with connect(server, token) as client:
        pauses = client.pauses()
    if as_json:
        print_json(pauses)
        return
    print_table(
        ["scope", "name", "paused at", "until"],
        [
            [p.scope.value, p.name, local_time(p.paused_at), local_time(p.until) or "resumed"]
            for p in pauses
        ],
    )


def _worker_order(stop: bool) -> click.Command:
    verb = "stop" if stop else "drain"

    @click.command(verb)
    @click.argument("ids", nargs=-1, metavar="[ID]...")
    @click.option("-q", "--queue", default=None, help="Every live worker serving this queue.")
    @click.option("--host", default=None, help="Every live worker on this host.")
    @remote_command
    def command(
        ids: tuple[str, ...],
        queue: str | None,
        host: str | None,
        server: str,
        token: str | None,
        as_json: bool,
    ) -> None:
        if not ids and queue is None and host is None:
            raise click.UsageError("name workers by ID, or select them with --queue and/or --host")
        if ids and (queue is not None or host is not None):
            raise click.UsageError(
                "name workers by ID or select them with --queue/--host, not both"
            )
        with connect(server, token) as client:
            order = client.stop_workers if stop else client.drain_workers
            told = order(ids, queue=queue, host=host)
        if as_json:
            print_json(told)
            return
        if not told:
            click.echo("no live worker matched", err=True)
            return
        print_table(["id", "name", "host", "state", "running"], [_row(w) for w in told])

    command.help = (
        "Tell workers (by ID, or every live one serving --queue and/or on --host) to "
        + (
            "hand their running tasks back at once (they run again elsewhere, without spending "
            "a retry) and exit."
            if stop
            else "lease nothing more, finish their running tasks and exit."
        )
        + " They obey at their next heartbeat."
    )
    return command


def _row(w: WorkerOut) -> list[str]:
    return [w.id, w.name, w.host, w.state, str(len(w.running))]


drain_command = _worker_order(stop=False)
stop_command = _worker_order(stop=True)
