"""What a worker can run, and which workers can run a task. Pure: no I/O, no clock.

A worker advertises at registration what its policy lets it run (`Capabilities`: the built-in
handlers it runs, the module prefixes whose functions it imports, its allowances) and labels the
operator gave it (`zone=eu`). A task can run on a worker when:

- its handler is one the worker runs: a built-in it advertises, or `package.module:function`
  under one of its module prefixes;
- the worker has every label the task `require`s;
- the worker advertises at least the resources the task asks for (what is free decides when).

A worker registered without capabilities (an older worker, or one a program registers by hand)
said nothing: it is offered any handler, and runs what its policy allows, as before. A task's
`prefer` labels never keep it from a worker; they choose among workers that could take it
(`preferred_elsewhere`).

The check is what the worker's own policy does before it runs a task
(conveyor.handlers.registry.check_handler), made by the server beforehand, so that a task no
worker can run waits for one that can instead of failing on the first that leases it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from conveyor.core.text import TEXT

MAX_ADVERTISED = 1000
MODULE_PREFIX_PATTERN = r"^(\*|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$"
ANY_MODULE = "*"

# Hints for the built-ins that need an allowance, as conveyor.handlers.registry groups them
# (SHELL_HANDLERS, FILES_HANDLERS; a unit test pins that the two agree).
_SHELL_HINT = "a worker started with --allow shell"
_FILES_HINT = "a worker started with --files-root DIR"
_FILES_PREFIXES = ("files.", "folders.")


class Capabilities(BaseModel):
    """What a worker runs beyond the queues it serves and the resources it has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    handlers: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=200), TEXT], ...],
        Field(max_length=MAX_ADVERTISED),
    ] = Field(default=(), description="The built-in handlers it runs (its allowances permit).")
    modules: Annotated[
        tuple[Annotated[str, Field(max_length=200, pattern=MODULE_PREFIX_PATTERN)], ...],
        Field(max_length=100),
    ] = Field(
        default=(),
        description="Module prefixes whose functions it runs (`package.module:function`); "
        "`*`: any module.",
    )
    shell: StrictBool = Field(default=False, description="It runs `shell` tasks (--allow shell).")
    files: StrictBool = Field(
        default=False, description="It has a files root for the file handlers (--files-root)."
    )
    networks: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=200), TEXT], ...],
        Field(max_length=100),
    ] = Field(
        default=(),
        description="Networks and hosts its `http` handler may reach beyond public addresses "
        "(--allow-network). Shown only: the address a URL reaches is known when the task runs.",
    )

    def runs_handler(self, handler: str) -> bool:
        module, colon, _ = handler.partition(":")
        if not colon:
            return handler in self.handlers
        return any(
            prefix == ANY_MODULE or module == prefix or module.startswith(prefix + ".")
            for prefix in self.modules
        )


def missing_handler(handler: str, capabilities: Capabilities | None) -> str | None:
    """What a worker lacks to run `handler`, as a phrase ("the 'shell' handler: needs a worker
    started with --allow shell"); None when it runs it."""
    if capabilities is None or capabilities.runs_handler(handler):
        return None
    module, colon, _ = handler.partition(":")
    if colon:
        return (
            f"module {module!r}: needs a worker started with --allow-module {module.split('.')[0]}"
        )
    if handler == "shell":
        return f"the 'shell' handler: needs {_SHELL_HINT}"
    if handler.startswith(_FILES_PREFIXES):
        return f"the {handler!r} handler: needs {_FILES_HINT}"
    return f"the {handler!r} handler, which it does not have"


def missing_labels(require: Mapping[str, str], labels: Mapping[str, str]) -> list[str]:
    """The required labels a worker lacks, as `key=value`."""
    return [f"{key}={value}" for key, value in require.items() if labels.get(key) != value]


def missing_resources(required: Mapping[str, float], advertised: Mapping[str, float]) -> list[str]:
    """The resources a worker does not have enough of even when idle, as `name=amount`."""
    return [
        f"{name}={amount:g}"
        for name, amount in required.items()
        if amount > 0 and advertised.get(name, 0.0) < amount
    ]


def unmet(
    handler: str,
    require: Mapping[str, str],
    resources: Mapping[str, float],
    capabilities: Capabilities | None,
    labels: Mapping[str, str],
    advertised: Mapping[str, float],
) -> list[str]:
    """Everything a worker lacks to ever run a task, as phrases; empty when it could."""
    lacking: list[str] = []
    handler_gap = missing_handler(handler, capabilities)
    if handler_gap is not None:
        lacking.append(handler_gap)
    lacking += [f"label {label}" for label in missing_labels(require, labels)]
    lacking += [f"resource {r}" for r in missing_resources(resources, advertised)]
    return lacking


def runs(
    handler: str,
    require: Mapping[str, str],
    capabilities: Capabilities | None,
    labels: Mapping[str, str],
) -> bool:
    """Whether a worker runs this handler and has every required label (resources aside): the
    lease's test, which the stores' candidate queries apply too."""
    if capabilities is not None and not capabilities.runs_handler(handler):
        return False
    return all(labels.get(key) == value for key, value in require.items())


def has_preferred(prefer: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a worker has every label a task prefers (a task without any: every worker)."""
    return all(labels.get(key) == value for key, value in prefer.items())
