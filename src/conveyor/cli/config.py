"""Where every option's value comes from, for every command, decided in one place.

    flag > environment variable > config file > default

Click resolves a parameter in exactly that order (command line, `envvar`, the context's
`default_map`, `default`), so the whole rule is to give every option an environment variable
and to build `default_map` from the file; the group in `conveyor.cli.main` does both before it
invokes a command. `conveyor config [COMMAND]` asks click the same questions and prints the
answers with their source.

Names: an option `--allow-module` of `conveyor worker` is `CONVEYOR_WORKER_ALLOW_MODULE` in the
environment and `allow-module` in the file's `[worker]` table. The options that many commands
share keep their one historical variable: `--db` is `CONVEYOR_DB`, `--server` `CONVEYOR_URL`,
`--token` `CONVEYOR_TOKEN`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from conveyor.config import ConfigFile, ConfigFileError

ENV_PREFIX = "CONVEYOR"
GROUP_OPTIONS = ("verbose",)
"""Keys the file may have outside any table: the `conveyor` group's own options."""
SECRET_OPTIONS = {"token"}
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def option_key(param: click.Option) -> str:
    """The option's name in the file: its first long flag without the dashes (`allow-module`)."""
    for opt in param.opts:
        if opt.startswith("--"):
            return opt[2:]
    return (param.name or "").replace("_", "-")


def env_name(command_path: tuple[str, ...], param: click.Option) -> str:
    words = [ENV_PREFIX, *command_path, option_key(param)]
    return "_".join(words).upper().replace("-", "_")


def name_env_vars(command: click.Command, command_path: tuple[str, ...]) -> None:
    """Give each option of `command` (and of its subcommands) without one its CONVEYOR_… variable.

    Idempotent: options that already have a variable (CONVEYOR_URL, …) keep it.
    """
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar is None:
            param.envvar = env_name(command_path, param)
            param.show_envvar = True
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            name_env_vars(sub, (*command_path, name))


def default_map(
    command: click.Command, table: Mapping[str, Any], config: ConfigFile, where: str
) -> dict[str, Any]:
    """The file's table for `command` as click's default_map, checked: an unknown key or a value
    of the wrong type is a ConfigFileError naming the file, the table and the key."""
    options = {option_key(p): p for p in command.params if isinstance(p, click.Option)}
    subcommands = command.commands if isinstance(command, click.Group) else {}
    result: dict[str, Any] = {}
    for key, value in table.items():
        if key in subcommands and isinstance(value, Mapping):
            result[key] = default_map(subcommands[key], value, config, f"{where}.{key}")
            continue
        param = options.get(key.replace("_", "-"))
        if param is None or param.name is None:
            known = ", ".join(sorted([*options, *subcommands])) or "none"
            raise ConfigFileError(
                f"{config.label}: [{where}] has no option {key!r} (known: {known})"
            )
        shaped = _shape(param, value)
        try:
            param.type_cast_value(click.Context(command), shaped)
        except click.BadParameter as exc:
            raise ConfigFileError(f"{config.label}: [{where}] {key}: {exc.message}") from None
        result[param.name] = shaped
    return result


def _shape(param: click.Option, value: Any) -> Any:
    """TOML lists and tables into what the flag takes: `["a", "b"]` -> "a,b", `{gpu = 1}` -> "gpu=1"
    (a repeatable option takes a list)."""
    if isinstance(value, Mapping):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if param.multiple:
        return list(value) if isinstance(value, list) else [value]
    if isinstance(value, list) and not param.is_flag:
        return ",".join(str(item) for item in value)
    return value


def check_tables(config: ConfigFile, commands: Iterator[str] | list[str]) -> None:
    """Every top-level key is a command's table or a group option: a typo is an error."""
    known = set(commands)
    for key, value in config.data.items():
        if key in GROUP_OPTIONS and not isinstance(value, Mapping):
            continue
        if key not in known or not isinstance(value, Mapping):
            raise ConfigFileError(
                f"{config.label}: {key!r} is not a command's table (commands: "
                f"{', '.join(sorted(known))}; outside tables only: {', '.join(GROUP_OPTIONS)})"
            )


@dataclass(frozen=True, slots=True)
class Resolved:
    """One option's effective value and where it came from."""

    option: str
    value: Any
    source: str
    env: str | None
    error: str | None = None


def resolve(
    command: click.Command, command_path: tuple[str, ...], config: ConfigFile, parent: click.Context
) -> list[Resolved]:
    """Ask click, as it would when the command runs with no flags, for each option's value."""
    table = config.table(*command_path)
    where = ".".join(command_path)
    ctx = click.Context(
        command,
        info_name=command_path[-1],
        parent=parent,
        default_map=default_map(command, table, config, where),
    )
    found = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        raw, source = param.consume_value(ctx, {})
        env = param.envvar if isinstance(param.envvar, str) else None
        error = None
        try:
            value = param.process_value(ctx, raw)
        except click.BadParameter as exc:
            value, error = raw, exc.message
        if source is ParameterSource.ENVIRONMENT:
            origin = f"env {env}"
        elif source is ParameterSource.DEFAULT_MAP:
            origin = f"{config.label} [{where}]"
        else:
            origin = "default"
        found.append(Resolved("--" + option_key(param), _display(param, value), origin, env, error))
    return found


def _display(param: click.Option, value: Any) -> Any:
    if not isinstance(value, str | int | float | tuple | list | dict) or value in ((), {}):
        return None  # unset (click's own marker for "no value", or an empty repeatable option)
    if param.name in SECRET_OPTIONS:
        return "********"
    if isinstance(value, tuple | list):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1********@", value)
    return value


def leaf_commands(
    command: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command


@click.command("config")
@click.argument("command_path", nargs=-1, metavar="[COMMAND]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
@click.pass_context
def config_command(ctx: click.Context, command_path: tuple[str, ...], as_json: bool) -> None:
    """Print the effective configuration of COMMAND (default: every command) and where each
    value comes from: flag > environment (CONVEYOR_*) > config file > default.

    The config file is --config PATH or CONVEYOR_CONFIG, else ./conveyor.toml, with one table
    per command ([server], [worker], [schedule.add], ...) keyed by long flag names.
    """
    root = ctx.find_root()
    group = root.command
    if not isinstance(group, click.Group):  # pragma: no cover - config is a subcommand
        raise click.UsageError("conveyor config runs under the conveyor command")
    config: ConfigFile = root.meta.get("conveyor.config", ConfigFile())
    targets = _targets(root, group, command_path)
    try:
        report = {" ".join(path): resolve(cmd, path, config, root) for path, cmd in targets}
    except ConfigFileError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "config_file": str(config.path) if config.path else None,
                    "commands": {
                        name: {r.option: _as_json(r) for r in rows} for name, rows in report.items()
                    },
                }
            )
        )
        return
    click.echo(f"config file: {config.label}")
    click.echo("precedence: flag > environment > config file > default")
    for name, rows in report.items():
        click.echo(f"\nconveyor {name}")
        lines = [
            (r.option, "" if r.value is None else json.dumps(r.value), r.source, r.env or "")
            for r in rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        for r, line in zip(rows, lines, strict=True):
            text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            click.echo(f"  {text}  {line[3]}".rstrip())
            if r.error:
                click.echo(f"  ^ invalid: {r.error}")
    if any(r.error for rows in report.values() for r in rows):
        raise SystemExit(1)


def _as_json(r: Resolved) -> dict[str, Any]:
    return {"value": r.value, "source": r.source, "env": r.env, "error": r.error}


def _targets(
    root: click.Context, group: click.Group, command_path: tuple[str, ...]
) -> list[tuple[tuple[str, ...], click.Command]]:
    if not command_path:
        found: list[tuple[tuple[str, ...], click.Command]] = []
        for name in group.list_commands(root):
            sub = group.get_command(root, name)
            if sub is not None and name != "config":
                found.extend(leaf_commands(sub, (name,)))
        return found
    command: click.Command = group
    for index, name in enumerate(command_path):
        sub = command.get_command(root, name) if isinstance(command, click.Group) else None
        if sub is None:
            raise click.BadParameter(
                f"no command {' '.join(command_path[: index + 1])!r}", param_hint="COMMAND"
            )
        command = sub
    return list(leaf_commands(command, command_path))
