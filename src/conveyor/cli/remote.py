"""What every command that talks to a server shares: where it is, the token, errors, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from pydantic import BaseModel

from conveyor.cli.options import server_option, token_option
from conveyor.client import Client
from conveyor.errors import ConveyorError

P = ParamSpec("P")
R = TypeVar("R")


def remote_command(func: Callable[P, R]) -> Callable[P, R]:
    """Add --server, --token and --json, and turn Conveyor errors into one-line messages."""

    @server_option
    @token_option
    @click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables."
    )
    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:  # the SDK's messages already say what to do next
            raise click.ClickException(str(exc)) from None

    return wrapper


@contextmanager
def connect(server: str, token: str | None) -> Iterator[Client]:
    with Client(server, token=token) as client:
        yield client


def print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        click.echo(value.model_dump_json())
    elif isinstance(value, Sequence):
        click.echo(json.dumps([item.model_dump(mode="json") for item in value]))
    else:
        click.echo(json.dumps(value, default=str))


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """`key=value` options into a dict; a malformed pair is a usage error naming the option."""
    found: dict[str, str] = {}
    for pair in pairs:
        for item in pair.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise click.BadParameter(f"{item!r} is not key=value", param_hint=option)
            found[key.strip()] = value.strip()
    return found


def parse_value(text: str, *, as_string: bool) -> Any:
    """A command-line argument as JSON when it is valid JSON (42, true, [1,2], {"a":1}), else text."""
    if as_string:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def shorten(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
