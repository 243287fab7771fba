"""Options shared by several commands, with their environment variables."""

from __future__ import annotations

import click

from conveyor.handlers import HandlerPolicy

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
