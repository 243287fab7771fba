"""`conveyor limit set|list|rm`: concurrency and rate limits that tasks take by name."""

from __future__ import annotations

import click

from conveyor.api.limits import LimitOut
from conveyor.cli.output import Column, print_table
from conveyor.cli.remote import connect, print_json, remote_command


@click.group("limit")
def limit_group() -> None:
    """Concurrency and rate limits: a task takes one with `--limit NAME` (or `NAME:KEY`, one
    bucket per key, `limits=["tenant:{kwargs.tenant}"]` in the SDK)."""


@limit_group.command("set")
@click.argument("name")
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=None,
    help="At most this many running at once, per key (0 holds them all back).",
)
@click.option(
    "--rate",
    type=click.IntRange(min=0),
    default=None,
    help="At most this many started per --per-s seconds, per key (0 holds them all back).",
)
@click.option(
    "--per-s",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="The period of --rate, in seconds.",
)
@remote_command
def set_command(
    name: str,
    concurrency: int | None,
    rate: int | None,
    per_s: float,
    server: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Store limit NAME, or replace it; every server keeps to it from then on."""
    with connect(server, token) as client:
        limit = client.set_limit(name, concurrency=concurrency, rate=rate, per_s=per_s)
    if as_json:
        print_json(limit)
    else:
        click.echo(f"limit {limit.name}: {_rule(limit)}")


@limit_group.command("list")
@remote_command
def list_command(server: str, token: str | None, as_json: bool) -> None:
    """Every limit, with the tasks running that take it and those it holds back."""
    with connect(server, token) as client:
        limits = client.limits()
    if as_json:
        print_json(limits)
        return
    print_table(
        ["name", "rule", Column("running", justify="right"), Column("held", justify="right")],
        [[limit.name, _rule(limit), str(limit.running), str(limit.held)] for limit in limits],
    )


@limit_group.command("rm")
@click.argument("name")
@remote_command
def rm_command(name: str, server: str, token: str | None, as_json: bool) -> None:
    """Remove limit NAME: the tasks it held back go as leases reach them."""
    with connect(server, token) as client:
        client.delete_limit(name)
    if as_json:
        print_json({"removed": name})
    else:
        click.echo(f"limit {name} removed")


def _rule(limit: LimitOut) -> str:
    if 0 in (limit.concurrency, limit.rate):
        return "holds every task back"
    parts = []
    if limit.concurrency is not None:
        parts.append(f"at most {limit.concurrency} running")
    if limit.rate is not None:
        parts.append(f"at most {limit.rate} started per {limit.per_s:g} s")
    return ", ".join(parts) + " per key"
