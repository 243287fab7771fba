"""The `conveyor` command. The CLI is the only place that reads the environment and sets up logging."""

from __future__ import annotations

import logging
import sys

import click

from conveyor.cli.run import run_command
from conveyor.cli.server import server_command
from conveyor.cli.worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="conveyor", prog_name="conveyor")
def cli(verbose: int) -> None:
    """Conveyor: a durable task scheduler. SQLite to start, PostgreSQL to grow."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(run_command)
cli.add_command(server_command)
cli.add_command(worker_command)


def main() -> None:
    sys.exit(cli.main(standalone_mode=True))
