"""Turning what a caller passes to `submit` into a validated TaskSpec."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias, TypedDict

from conveyor.core.spec import RetryPolicy, TaskSpec
from conveyor.core.types import JSON
from conveyor.core.validation import validated
from conveyor.errors import InvalidSpecError
from conveyor.handlers.naming import handler_name


class SpecOptions(TypedDict, total=False):
    """The TaskSpec fields `submit` and `@task` accept as keywords (all but handler and args).

    The handler's own keyword arguments go in `kwargs`, so that they can never be mistaken for
    an option.
    """

    kwargs: Mapping[str, JSON]
    name: str | None
    queue: str
    priority: int
    depends_on: Sequence[str]
    run_at: datetime | None
    delay_s: float | None
    timeout_s: float | None
    max_retries: int
    retry: RetryPolicy
    resources: Mapping[str, float]
    limits: Sequence[str]
    key: str | None
    labels: Mapping[str, str]
    require: Mapping[str, str]
    prefer: Mapping[str, str]


Submittable: TypeAlias = str | Callable[..., Any] | TaskSpec
"""What `submit` runs: a handler name, a function, a `@task` function, or a ready TaskSpec."""


def build_spec(handler: Submittable, args: Sequence[JSON], options: SpecOptions) -> TaskSpec:
    """Validate into a TaskSpec; InvalidSpecError names the field at fault."""
    # Imported here: decorator.py needs this module first.
    from conveyor.client.decorator import TaskFunction

    if isinstance(handler, TaskSpec):
        if args:
            raise InvalidSpecError("give the arguments inside the TaskSpec", field="args")
        return make_spec(handler.model_dump(exclude_unset=True), options)
    if isinstance(handler, TaskFunction):
        return handler.spec(*args, **options)
    try:
        name = handler_name(handler)
    except ValueError as exc:
        raise InvalidSpecError(str(exc), field="handler") from None
    return make_spec({"handler": name, "args": list(args)}, options)


def make_spec(fields: Mapping[str, Any], options: SpecOptions) -> TaskSpec:
    return validated(TaskSpec, {**fields, **options})
