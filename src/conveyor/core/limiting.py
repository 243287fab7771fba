"""Concurrency and rate limits: what a limit allows, the keys a task takes, and whether a task
may start now. Pure: no I/O, no clock.

A limit is named by the operator and stored in the database. `concurrency` allows at most that
many of the tasks that take it running at once; `rate` allows at most that many starts in any
`per_s` seconds; a limit may have both. A task names the limits it takes in its `limits`, each
`NAME` or `NAME:KEY`, and every distinct key is a bucket of its own: with `tenant` at
concurrency 2, `tenant:acme` and `tenant:globex` may each have two tasks running. A key may come
from the task's arguments or labels, filled in at submit: `tenant:{kwargs.tenant}`,
`shard:{args.0}`, `team:{labels.team}`.

A task that names a limit nobody has set is not held back by it. The running tasks still count:
once the limit is set, those already running with it take its slots.

Rates are a sliding window over the starts themselves rather than a token bucket: "at most R
starts in any `per_s` seconds" is then exactly what holds (a bucket of R tokens lets up to 2R
through in some window of that length), and a start is a row the lease writes in its own
transaction (engine/limits.py), never a counter updated in place that could drift from what
happened. The price is one row per start kept for `per_s` seconds, counted as a range of an
index, hence the bound on `rate` (MAX_RATE).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    model_validator,
)

from conveyor.core.types import JSON

LIMIT_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,100}$"
"""A limit's name; no `:`, which separates the name from a key."""
LIMIT_REF_PATTERN = (
    r"^[A-Za-z0-9_.\-]{1,100}"
    r"(?::(?:[^{}]|\{(?:kwargs|labels)\.[^{}]{1,200}\}|\{args\.[0-9]{1,5}\})*)?$"
)
"""What a task's `limits` entry may be: a name, then optionally `:` and a key in which `{` and `}`
only ever enclose a placeholder: `{kwargs.NAME}`, `{labels.NAME}` or `{args.INDEX}`."""
MAX_TASK_LIMITS = 8
MAX_KEY_LENGTH = 200
"""A limit reference as written, and the key it becomes once filled in."""
MAX_CONCURRENCY = 1_000_000
MAX_RATE = 10_000
"""Starts per window: each is a row kept for the window's length (see the module's docstring)."""
MAX_PER_S = 86_400.0

_PLACEHOLDER = re.compile(r"\{(kwargs|labels|args)\.([^{}]+)\}")


def _whole(value: object) -> object:
    """JSON Schema's integers include 2.0: take it as 2 (as conveyor.core.spec.WHOLE does)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = BeforeValidator(_whole)


def _something_limited_schema(schema: dict[str, Any]) -> None:
    """JSON schema: `concurrency` or `rate` is given, and not null."""
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "integer"}}}
        for name in ("concurrency", "rate")
    ]


class LimitSettings(BaseModel):
    """What a limit allows, as the operator sets it (`PUT /limits/{limit}`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=_something_limited_schema
    )

    concurrency: Annotated[StrictInt, Field(ge=0, le=MAX_CONCURRENCY), Whole] | None = Field(
        default=None,
        description="At most this many of the tasks that take one key of it running at once "
        "(0 holds them all back).",
    )
    rate: Annotated[StrictInt, Field(ge=0, le=MAX_RATE), Whole] | None = Field(
        default=None,
        description="At most this many of those tasks started in any `per_s` seconds.",
    )
    per_s: Annotated[StrictFloat, Field(gt=0, le=MAX_PER_S)] = Field(
        default=1.0, description="The window of `rate`, in seconds."
    )

    @model_validator(mode="after")
    def _limits_something(self) -> Self:
        if self.concurrency is None and self.rate is None:
            raise ValueError("give concurrency, rate, or both")
        return self


class Limit(LimitSettings):
    """A named limit."""

    name: Annotated[str, Field(pattern=LIMIT_NAME_PATTERN)]

    @property
    def window(self) -> timedelta:
        """How long a start counts against the limit: its rate's window (none without a rate)."""
        return timedelta(seconds=self.per_s if self.rate is not None else 0.0)


class Full(StrEnum):
    """What a limit has run out of."""

    CONCURRENCY = "concurrency"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class Usage:
    """What one key of a limit has taken: tasks running with it now, and starts (of tasks
    running or not) in its rate's current window."""

    running: int = 0
    started: int = 0


def room(limit: Limit, usage: Usage) -> int:
    """How many more tasks of one key may start now (never below zero)."""
    free = MAX_CONCURRENCY
    if limit.concurrency is not None:
        free = limit.concurrency - usage.running
    if limit.rate is not None:
        free = min(free, limit.rate - usage.started)
    return max(0, free)


def full(limit: Limit, usage: Usage) -> Full | None:
    """What stops another task of the key from starting now; None if nothing does."""
    if limit.concurrency is not None and usage.running >= limit.concurrency:
        return Full.CONCURRENCY
    if limit.rate is not None and usage.started >= limit.rate:
        return Full.RATE
    return None


def starts_to_leave(limit: Limit, usage: Usage) -> int | None:
    """How many of the window's starts, oldest first, must leave it before the rate lets one
    more task of the key start: the rate reopens when the last of them does. None when it lets
    one start now, or never will by itself (a rate of 0)."""
    if limit.rate is None or limit.rate == 0 or usage.started < limit.rate:
        return None
    return usage.started - limit.rate + 1


def limit_name(key: str) -> str:
    """The limit a key belongs to: `tenant` for `tenant:acme`, `db` for `db`."""
    return key.partition(":")[0]


# ---- the keys a task takes ------------------------------------------------------------------


class LimitKeyError(ValueError):
    """A limit's key cannot be filled in from the task; `index` is the entry of `limits`."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def expand_limits(
    refs: Sequence[str],
    args: Sequence[JSON],
    kwargs: Mapping[str, JSON],
    labels: Mapping[str, str],
) -> list[str]:
    """The keys a task takes: each reference with its placeholders filled in from the task's
    arguments and labels, duplicates left out. LimitKeyError names the entry at fault."""
    keys: list[str] = []
    for index, ref in enumerate(refs):
        if "{" not in ref:
            key = ref
        else:
            key = _PLACEHOLDER.sub(
                partial(_value, index, args=args, kwargs=kwargs, labels=labels), ref
            )
        if len(key) > MAX_KEY_LENGTH:
            raise LimitKeyError(
                index, f"the key {key[:40]!r}... is {len(key)} characters once filled in; at "
                f"most {MAX_KEY_LENGTH} are allowed",
            )  # fmt: skip
        if key not in keys:
            keys.append(key)
    return keys


def _value(
    index: int,
    match: re.Match[str],
    *,
    args: Sequence[JSON],
    kwargs: Mapping[str, JSON],
    labels: Mapping[str, str],
) -> str:
    source, name = match.group(1), match.group(2)
    value: JSON
    if source == "args":
        if not name.isdigit() or int(name) >= len(args):
            raise LimitKeyError(
                index, f"{match.group(0)}: the task has {len(args)} positional argument(s)"
            )
        value = args[int(name)]
    elif source == "kwargs":
        if name not in kwargs:
            raise LimitKeyError(index, f"{match.group(0)}: kwargs has no {name!r}")
        value = kwargs[name]
    else:
        if name not in labels:
            raise LimitKeyError(index, f"{match.group(0)}: labels has no {name!r}")
        value = labels[name]
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise LimitKeyError(
        index,
        f"{match.group(0)} is {json.dumps(value)[:60]}: a key is made of text or numbers, "
        "known when the task is submitted",
    )


# ---- admitting a lease's candidates ---------------------------------------------------------


@dataclass(slots=True)
class Admission:
    """One lease's decisions, taken in lease order: a task is admitted when every key it takes
    has room, and then takes one slot of each; one that finds a key full is held on that key.

    `rooms` gives the room of every key that has a limit (keys left out are not limited);
    `busy` the keys whose room cannot be known in this transaction (another server's lease is
    deciding them): a task that takes one is passed over, neither admitted nor held."""

    rooms: dict[str, int]
    busy: Collection[str] = ()
    held: dict[str, str] = field(default_factory=dict)
    """Task id: the key it waits on."""

    def admit(self, task_id: str, keys: Sequence[str]) -> bool:
        if not keys:
            return True
        if any(key in self.busy for key in keys):
            return False
        for key in keys:
            if self.rooms.get(key, 1) <= 0:
                self.held[task_id] = key
                return False
        for key in keys:
            if key in self.rooms:
                self.rooms[key] -= 1
        return True


@dataclass(frozen=True, slots=True)
class LimitUse:
    """A limit with what its keys take now, all keys together."""

    limit: Limit
    running: int
    """Tasks running that take one of its keys."""
    held: int
    """Queued tasks held back because one of its keys was full when a lease came to them."""
