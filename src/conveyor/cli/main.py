"""The `conveyor` command. The CLI is the only place that reads the environment and sets up logging.

Commands are imported only when invoked: worker child processes re-import the main script, and
`conveyor --help` should not pay for FastAPI, uvicorn and the engine.

Every option of every command is configured the same way (`conveyor.cli.config`): a flag, else its
CONVEYOR_* environment variable, else the config file's table for the command, else the default.
The group names the variables when it loads a command and reads the file before invoking it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from conveyor.cli.config import check_tables, default_map, name_env_vars
from conveyor.cli.logs import configure_logging
from conveyor.config import ENV_CONFIG, ConfigFileError, find_config_file, load_config_file

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
    "why": "conveyor.cli.tasks:why_command",
    "failures": "conveyor.cli.tasks:failures_command",
    "cancel": "conveyor.cli.bulk:cancel_command",
    "retry": "conveyor.cli.bulk:retry_command",
    "rm": "conveyor.cli.bulk:rm_command",
    "workers": "conveyor.cli.cluster:workers_command",
    "pause": "conveyor.cli.operate:pause_command",
    "resume": "conveyor.cli.operate:resume_command",
    "pauses": "conveyor.cli.operate:pauses_command",
    "bulk": "conveyor.cli.bulk:bulk_command",
    "status": "conveyor.cli.cluster:status_command",
    "schedule": "conveyor.cli.schedules:schedule_group",
    "limit": "conveyor.cli.limits:limit_group",
    "monitor": "conveyor.cli.monitor:monitor_command",
    "config": "conveyor.cli.config:config_command",
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
        name_env_vars(command, (cmd_name,))
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    count=True,
    envvar="CONVEYOR_VERBOSE",
    help="More log output (-v info, -vv debug; env CONVEYOR_VERBOSE).",
)
@click.option(
    "--config",
    "config_path",
    envvar=ENV_CONFIG,
    metavar="PATH",
    default=None,
    help=f"Config file (env {ENV_CONFIG})  [default: ./conveyor.toml if present]",
)
@click.version_option(package_name="conveyor", prog_name="conveyor")
@click.pass_context
def cli(ctx: click.Context, verbose: int, config_path: str | None) -> None:
    """Conveyor: a durable task scheduler. SQLite to start, PostgreSQL to grow.

    Every option can also be set in the environment (CONVEYOR_<COMMAND>_<OPTION>, shown in each
    command's --help) or in conveyor.toml ([server] port = 8001); a flag beats the environment,
    which beats the file. `conveyor config` shows what applies.
    """
    try:
        config = load_config_file(find_config_file(config_path, Path.cwd()))
        check_tables(config, list(COMMANDS))
        name = ctx.invoked_subcommand
        group = ctx.command
        command = group.get_command(ctx, name) if name and isinstance(group, click.Group) else None
        if name and command is not None:
            ctx.default_map = {name: default_map(command, config.table(name), config, name)}
    except ConfigFileError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.meta["conveyor.config"] = config
    if ctx.get_parameter_source("verbose") is ParameterSource.DEFAULT:
        verbose = int(config.data.get("verbose", 0))
    configure_logging(logging.WARNING - 10 * min(verbose, 2))


def main() -> None:
    sys.exit(cli.main(standalone_mode=True))
