"""Options shared by several commands, with their environment variables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from conveyor.cli.logs import LogFormat
from conveyor.client.session import DEFAULT_URL
from conveyor.handlers import HandlerPolicy
from conveyor.handlers.network import parse_entry
from conveyor.store.base import Durability

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType[float]):
    """Seconds, or a number with a unit: 90, 90s, 15m, 12h, 7d."""

    name = "duration"
    _units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = self._units.get(text[-1:], None)
        try:
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 90, 15m, 12h or 7d", param, ctx)
        if seconds <= 0:
            self.fail("must be positive", param, ctx)
        return seconds


DURATION = Duration()

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
    help="SQLite file, or postgresql://user@host/db (env CONVEYOR_DB).",
)
durability_option = click.option(
    "--durability",
    type=click.Choice([d.value for d in Durability]),
    default=Durability.NORMAL.value,
    show_default=True,
    help="What an acknowledged write survives, with SQLite: normal, any process crash (kill -9 "
    "included); full, also an operating-system crash or power loss, at a higher cost per "
    "commit. PostgreSQL commits durably either way.",
)
accept_wal_loss_option = click.option(
    "--accept-wal-loss",
    is_flag=True,
    help="Open a SQLite database whose write-ahead log was lost or damaged after a crash, "
    "accepting that the commits in it are gone (refused otherwise, saying what is lost).",
)


def store_options(command: F) -> F:
    """--db, --durability and --accept-wal-loss: where the tasks live and how safely."""
    return db_option(durability_option(accept_wal_loss_option(command)))


log_format_option = click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=LogFormat.TEXT.value,
    show_default=True,
    help="How log records are written to stderr: text (a line per record, its fields as "
    "key=value) or json (one JSON object per line, for log collectors).",
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


def _networks(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for entry in value:
        try:
            parse_entry(entry)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return tuple(value)


allow_network_option = click.option(
    "--allow-network",
    "allow_networks",
    multiple=True,
    metavar="CIDR|HOST",
    callback=_networks,
    help="Let the http handler reach this network (10.0.0.0/8, 127.0.0.1) or host name although "
    "it is not public (repeatable)  [default: public addresses only]",
)


def files_root_option(help_text: str) -> Callable[[F], F]:
    """--files-root DIR: the directory the file handlers work in (resolved to a real path)."""
    return click.option(
        "--files-root",
        "files_root",
        type=click.Path(exists=True, file_okay=False, resolve_path=True),
        default=None,
        metavar="DIR",
        help=help_text,
    )


def _variables(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, str]:
    """`--var url=http://x --var dir=out` into {"url": "http://x", "dir": "out"}."""
    found: dict[str, str] = {}
    for item in value:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", ctx, param)
        found[name.strip()] = text
    return found


var_option = click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_variables,
    help="Set the job file variable NAME, used there as ${NAME} (repeatable).",
)


def handler_policy(
    allow: tuple[str, ...],
    allow_modules: tuple[str, ...],
    files_root: str | None = None,
    allow_networks: tuple[str, ...] = (),
) -> HandlerPolicy:
    return HandlerPolicy(
        allow_shell="shell" in allow,
        allow_modules=tuple(allow_modules),
        files_root=files_root,
        allow_networks=tuple(allow_networks),
    )
