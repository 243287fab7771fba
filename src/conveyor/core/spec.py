"""TaskSpec: what a user asks to run. Validated once, at the edge, with the field named on error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from conveyor.core.limits import MAX_ARGS_BYTES, check_json
from conveyor.core.types import JSON

NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"
HANDLER_PATTERN = re.compile(
    r"^(?:[A-Za-z_][A-Za-z0-9_.\-]{0,99}"  # a registered name such as "sha256" or "files.copy"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*)$"  # module:function
)
MAX_PRIORITY = 1_000_000
MAX_RETRIES = 100
MAX_DEPENDENCIES = 10_000
MAX_RESOURCE_AMOUNT = 1_000_000_000_000
"""Bounds resource amounts so that every one converts to a finite float."""

Number = StrictInt | StrictFloat


class RetryPolicy(BaseModel):
    """Exponential backoff between failed attempts: base * 2**(n-1), capped, with jitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_s: Annotated[Number, Field(ge=0, le=86_400)] = 1.0
    backoff_max_s: Annotated[Number, Field(ge=0, le=7 * 86_400)] = 300.0
    jitter: Annotated[Number, Field(ge=0, le=1)] = 0.1
    """Fraction of the delay drawn at random, so that retries of many tasks do not arrive together."""


DEFAULT_RETRY_POLICY = RetryPolicy()


class TaskSpec(BaseModel):
    """One task as submitted. Unknown fields are refused so that typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    handler: str = Field(
        description="A registered handler name (`sha256`) or `package.module:function`."
    )
    args: list[JSON] = Field(default_factory=list)
    kwargs: dict[str, JSON] = Field(default_factory=dict)
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] = "default"
    priority: Annotated[StrictInt, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    depends_on: Annotated[list[str], Field(max_length=MAX_DEPENDENCIES)] = Field(
        default_factory=list
    )
    run_at: datetime | None = Field(
        default=None, description="Start no earlier than this (UTC if no zone)."
    )
    delay_s: Annotated[Number, Field(ge=0, le=366 * 86_400)] | None = None
    timeout_s: Annotated[Number, Field(gt=0, le=30 * 86_400)] | None = None
    max_retries: Annotated[StrictInt, Field(ge=0, le=MAX_RETRIES)] = 0
    retry: RetryPolicy = DEFAULT_RETRY_POLICY
    resources: dict[str, Annotated[Number, Field(ge=0, le=MAX_RESOURCE_AMOUNT)]] = Field(
        default_factory=dict
    )
    key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    labels: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)

    @field_validator("args", "kwargs")
    @classmethod
    def _bounded_arguments(cls, value: JSON, info: ValidationInfo) -> JSON:
        return check_json(value, max_bytes=MAX_ARGS_BYTES, what=str(info.field_name))

    @field_validator("handler")
    @classmethod
    def _handler_syntax(cls, value: str) -> str:
        if not HANDLER_PATTERN.fullmatch(value):  # `$` would let a trailing newline through
            raise ValueError(
                "must be a registered handler name (e.g. 'sha256') or 'package.module:function'"
            )
        return value

    @field_validator("run_at")
    @classmethod
    def _run_at_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+14:00: before year 1 in UTC
            raise ValueError("is out of range once converted to UTC") from None

    @field_validator("depends_on")
    @classmethod
    def _distinct_dependencies(cls, value: list[str]) -> list[str]:
        if any(not dep for dep in value):
            raise ValueError("dependencies must be non-empty task ids or names")
        return list(dict.fromkeys(value))

    @field_validator("resources")
    @classmethod
    def _resource_names(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"resource name {name!r} must be an identifier")
        return value

    @field_validator("delay_s")
    @classmethod
    def _one_start_time(cls, value: float | None, info: ValidationInfo) -> float | None:
        # A field validator (run_at is validated first) so that the error names a field.
        if value is not None and info.data.get("run_at") is not None:
            raise ValueError("give run_at or delay_s, not both")
        return value

    def display_name(self) -> str:
        return self.name or self.handler


def parse_spec(data: Any) -> TaskSpec:
    """Validate a mapping into a TaskSpec; raises pydantic.ValidationError naming the field."""
    return TaskSpec.model_validate(data)
