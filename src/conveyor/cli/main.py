"""The `conveyor` command. The CLI is the only place that reads the environment and sets up logging.

Commands are imported only when invoked: worker child processes re-import the main script, and
`conveyor --help` should not pay for FastAPI, uvicorn and the engine.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

# name -> "module:attribute", in the order `conveyor --help` lists them
COMMANDS = {
    "run": "conveyor.cli.run:run_command",
    "server": "conveyor.cli.server:server_command",
    "worker": "conveyor.cli.worker:worker_command",
    "submit": "conveyor.cli.tasks:submit_command",
    "apply": "conveyor.cli.cluster:apply_command",
    "tasks": "conveyor.cli.tasks:tasks_command",
    "task": "conveyor.cli.tasks:task_command",
    "result": "conveyor.cli.tasks:result_command",
    "cancel": "conveyor.cli.tasks:cancel_command",
    "retry": "conveyor.cli.tasks:retry_command",
    "rm": "conveyor.cli.tasks:rm_command",
    "workers": "conveyor.cli.cluster:workers_command",
    "status": "conveyor.cli.cluster:status_command",
    "schedule": "conveyor.cli.schedules:schedule_group",
    "monitor": "conveyor.cli.monitor:monitor_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="conveyor", prog_name="conveyor")
def cli(verbose: int) -> None:
    """Conveyor: a durable task scheduler. SQLite to start, PostgreSQL to grow."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    sys.exit(cli.main(standalone_mode=True))
