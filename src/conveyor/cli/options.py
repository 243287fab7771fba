"""Options shared by several commands, with their environment variables."""

from __future__ import annotations

import click

from conveyor.client.session import DEFAULT_URL
from conveyor.handlers import HandlerPolicy

server_option = click.option(
    "--server",
    "server",
    envvar="CONVEYOR_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Server URL (env CONVEYOR_URL).",
)
token_option = click.option(
    "--token", envvar="CONVEYOR_TOKEN", default=None, help="Bearer token (env CONVEYOR_TOKEN)."
)

db_option = click.option(
    "--db",
    envvar="CONVEYOR_DB",
    default="conveyor.db",
    show_default=True,
    help="SQLite file (env CONVEYOR_DB).",
)
allow_option = click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(["shell"]),
    help="Allow a guarded handler family (repeatable): shell.",
)
allow_module_option = click.option(
    "--allow-module",
    "allow_modules",
    multiple=True,
    metavar="PREFIX",
    help="Allow `PREFIX.module:function` handlers (repeatable; '*' allows any module).",
)


def handler_policy(allow: tuple[str, ...], allow_modules: tuple[str, ...]) -> HandlerPolicy:
    return HandlerPolicy(allow_shell="shell" in allow, allow_modules=tuple(allow_modules))
