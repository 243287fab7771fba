"""Task options shared by `conveyor submit` and `conveyor schedule add`, and the spec they build."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from conveyor.cli.remote import parse_pairs, parse_value
from conveyor.core.spec import TaskSpec
from conveyor.core.validation import validated
from conveyor.errors import InvalidSpecError

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "-k",
        "--kwarg",
        "kwargs",
        multiple=True,
        help="Keyword argument key=value (value as in ARGS).",
    ),
    click.option(
        "--str", "as_string", is_flag=True, help="Pass every ARG as a string, never as JSON."
    ),
    click.option("--name", "task_name", default=None, help="A name for the task."),
    click.option(
        "-p", "--priority", type=int, default=0, show_default=True, help="Higher runs first."
    ),
    click.option(
        "--after",
        multiple=True,
        metavar="ID",
        help="Run only after task ID succeeded (repeatable).",
    ),
    click.option(
        "--timeout",
        "timeout_s",
        type=float,
        default=None,
        help="Kill an attempt after this many seconds.",
    ),
    click.option(
        "--retries",
        "max_retries",
        type=int,
        default=0,
        show_default=True,
        help="Retries after a failure.",
    ),
    click.option("-q", "--queue", default="default", show_default=True),
    click.option("--label", "labels", multiple=True, help="Label key=value (repeatable)."),
    click.option(
        "--resources",
        "resources",
        multiple=True,
        help="Resources needed, e.g. gpu=1,memory_mb=2048.",
    ),
    click.option(
        "--limit",
        "limits",
        multiple=True,
        metavar="NAME[:KEY]",
        help="Take a slot of this limit (repeatable); `conveyor limit set` defines it.",
    ),
    click.option(
        "--require",
        multiple=True,
        metavar="KEY=VALUE",
        help="Run only on a worker with this label (repeatable).",
    ),
    click.option(
        "--prefer",
        multiple=True,
        metavar="KEY=VALUE",
        help="Run on a worker with this label when one is free (repeatable).",
    ),
]


def task_options(func: F) -> F:
    """Add the task options; the command receives them as keyword arguments for build_spec."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def build_spec(
    handler: str, args: tuple[str, ...], options: dict[str, Any], **extra: Any
) -> TaskSpec:
    """The TaskSpec the options describe; a bad value is a usage error naming the option."""
    as_string = bool(options["as_string"])
    data = {
        "handler": handler,
        "args": [parse_value(a, as_string=as_string) for a in args],
        "kwargs": {
            k: parse_value(v, as_string=as_string)
            for k, v in parse_pairs(options["kwargs"], "--kwarg").items()
        },
        "name": options["task_name"],
        "priority": options["priority"],
        "depends_on": list(options["after"]),
        "timeout_s": options["timeout_s"],
        "max_retries": options["max_retries"],
        "queue": options["queue"],
        "labels": parse_pairs(options["labels"], "--label"),
        "resources": _amounts(parse_pairs(options["resources"], "--resources")),
        "limits": list(options["limits"]),
        "require": parse_pairs(options["require"], "--require"),
        "prefer": parse_pairs(options["prefer"], "--prefer"),
        **extra,
    }
    try:
        return validated(TaskSpec, data)
    except InvalidSpecError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.field) from None


def _amounts(pairs: dict[str, str]) -> dict[str, float]:
    try:
        return {name: float(amount) for name, amount in pairs.items()}
    except ValueError:
        raise click.BadParameter(
            "amounts must be numbers, e.g. gpu=1", param_hint="--resources"
        ) from None
