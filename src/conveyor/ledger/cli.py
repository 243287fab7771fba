"""`python -m conveyor.ledger check`: hold the ledgers of a run against a server's records."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from conveyor.ledger.checker import check
from conveyor.ledger.fetch import fetch_tasks
from conveyor.ledger.records import read_executions, read_submits


@click.group()
def main() -> None:
    """Execution and submit ledgers: check a run for lost, stuck, unexpected and twice-run
    tasks, and for executions started inside another attempt's lease."""


@main.command("check")
@click.option(
    "--ledger",
    "ledger_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The directory the workers wrote their execution ledgers to (worker --ledger).",
)
@click.option(
    "--submits",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The submit ledger the client wrote (conveyor.ledger.SubmitLedger).",
)
@click.option("--server", required=True, help="The server whose database holds the run.")
@click.option("--token", envvar="CONVEYOR_TOKEN", default=None, help="Bearer token, if needed.")
@click.option(
    "--lease-s",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="The server's lease; stands in for a lease expiry the server did not record.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the JSON report to this file.")  # fmt: skip
def check_command(
    ledger_dir: Path,
    submits: Path,
    server: str,
    token: str | None,
    lease_s: float,
    json_path: Path | None,
) -> None:
    """Print the report (JSON, then a summary); exit 1 on any violation."""
    acknowledged = read_submits(submits)
    tasks = fetch_tasks(server, token=token, task_ids=[s.task_id for s in acknowledged])
    report = check(acknowledged, read_executions(ledger_dir), tasks, lease_s)
    text = report.dumps()
    if json_path is not None:
        json_path.write_text(text + "\n", encoding="utf-8")
    click.echo(text)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)
