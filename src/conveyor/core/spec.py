"""TaskSpec: what a user asks to run. Validated once, at the edge, with the field named on error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from conveyor.core.limiting import LIMIT_REF_PATTERN, MAX_KEY_LENGTH, MAX_TASK_LIMITS
from conveyor.core.limits import MAX_ARGS_BYTES, check_json
from conveyor.core.text import TEXT, check_json_values
from conveyor.core.types import JSON

NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"
HANDLER_PATTERN = (
    r"^(?:[A-Za-z_][A-Za-z0-9_.\-]{0,99}"  # a registered name such as "sha256" or "files.copy"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*)$"  # module:function
)
"""In the JSON schema too, so that what the schema allows is what the server accepts."""
_HANDLER = re.compile(HANDLER_PATTERN)
MAX_PRIORITY = 1_000_000
MAX_RETRIES = 100
MAX_DEPENDENCIES = 10_000
MAX_RESOURCE_AMOUNT = 1_000_000_000_000
"""Bounds resource amounts so that every one converts to a finite float."""
MAX_HANDLER_LENGTH = 200
MAX_ID_LENGTH = 200
"""A dependency (a task id, or the name of a task of the same batch) or an idempotency key."""
MAX_LABELS = 100
MAX_LABEL_LENGTH = 200
"""Label keys and values alike."""
MAX_RESOURCES = 64
PLACEMENT_LABEL_PATTERN = r"^[A-Za-z0-9_.:/\-]{1,100}$"
MAX_PLACEMENT_LABELS = 20


# ---- wire types: what the JSON schema says is exactly what validation accepts -----------------
#
# Bounds go next to the base type and before a validator (`Annotated[StrictInt, Field(ge=0),
# WHOLE]`): constraints written after a validator reach the JSON schema as `ge`/`le`, which
# JSON Schema does not know, so the schema would claim no bounds at all.


def _whole(value: object) -> object:
    """JSON Schema's integers include 2.0 (a number with a zero fraction): take it as 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(_whole)
"""Accept integral floats for a StrictInt (booleans, 2.5 and "2" are still refused)."""

Number = StrictFloat
"""A JSON number (integers too, as floats); booleans and strings are refused."""

_DATE_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    """Date-times come as ISO 8601 text (or datetime objects from Python): a number is refused,
    though pydantic would read it as seconds since 1970 where the schema says `date-time`."""
    if isinstance(value, str) and not _DATE_TIME_TEXT.match(value):
        raise ValueError("must be an ISO 8601 date and time such as 2030-01-31T09:00:00Z")
    if isinstance(value, bool | int | float):
        raise ValueError("must be an ISO 8601 date and time such as 2030-01-31T09:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_date_time_text)]


class _KeysByPattern:
    """JSON schema: a dict whose keys follow a pattern, written as client generators read it:
    `additionalProperties` holds the values' schema and `propertyNames` the keys' pattern.
    (pydantic writes `patternProperties`, which lets any other key through, and which
    openapi-python-client and others turn into an object that can hold no key at all.)"""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        by_pattern = schema.pop("patternProperties", None)
        if by_pattern:
            ((pattern, values),) = by_pattern.items()
            schema["additionalProperties"] = values
            schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
        return schema


KEYS_BY_PATTERN = _KeysByPattern()

LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_LENGTH), TEXT]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_LENGTH), TEXT]

RESOURCE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ResourceMap = Annotated[
    dict[
        Annotated[str, Field(pattern=RESOURCE_PATTERN)],
        Annotated[Number, Field(ge=0, le=MAX_RESOURCE_AMOUNT)],
    ],
    Field(max_length=MAX_RESOURCES),
    KEYS_BY_PATTERN,
]
"""Resources by name (`cpu`, `gpu`, `memory_mb`), each an amount."""


PlacementLabels = Annotated[
    dict[
        Annotated[str, Field(pattern=PLACEMENT_LABEL_PATTERN)],
        Annotated[str, Field(max_length=MAX_LABEL_LENGTH), TEXT],
    ],
    Field(max_length=MAX_PLACEMENT_LABELS),
    KEYS_BY_PATTERN,
]
"""Worker labels (`zone: eu`) a task requires or prefers, and a worker's own labels."""


def _one_start_time_schema(schema: dict[str, Any]) -> None:
    """JSON schema: `run_at` and `delay_s` are not both given (null counts as not given)."""
    schema["not"] = {
        "required": ["run_at", "delay_s"],
        "properties": {"run_at": {"type": "string"}, "delay_s": {"type": "number"}},
    }


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

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_one_start_time_schema)

    handler: str = Field(
        description="A registered handler name (`sha256`) or `package.module:function`.",
        max_length=MAX_HANDLER_LENGTH,
        json_schema_extra={"pattern": HANDLER_PATTERN},
    )
    args: list[JSON] = Field(default_factory=list)
    kwargs: dict[str, JSON] = Field(default_factory=dict)
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] = "default"
    priority: Annotated[StrictInt, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY), WHOLE] = 0
    depends_on: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), TEXT]],
        Field(max_length=MAX_DEPENDENCIES),
    ] = Field(default_factory=list, description="Task ids, or names of tasks of the same batch.")
    run_at: Timestamp | None = Field(
        default=None, description="Start no earlier than this (UTC if no zone)."
    )
    delay_s: Annotated[Number, Field(ge=0, le=366 * 86_400)] | None = None
    timeout_s: Annotated[Number, Field(gt=0, le=30 * 86_400)] | None = None
    max_retries: Annotated[StrictInt, Field(ge=0, le=MAX_RETRIES), WHOLE] = 0
    retry: RetryPolicy = DEFAULT_RETRY_POLICY
    resources: ResourceMap = Field(default_factory=dict)
    limits: Annotated[
        list[Annotated[str, Field(max_length=MAX_KEY_LENGTH, pattern=LIMIT_REF_PATTERN), TEXT]],
        Field(max_length=MAX_TASK_LIMITS),
    ] = Field(
        default_factory=list,
        description="The limits it takes (`PUT /limits/{name}` sets one): `NAME`, or "
        "`NAME:KEY` for a bucket of its own per key, where the key may hold `{kwargs.NAME}`, "
        "`{labels.NAME}` or `{args.INDEX}`, filled in at submit (`tenant:{kwargs.tenant}`).",
    )
    key: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), TEXT] | None = None
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS), KEYS_BY_PATTERN] = (
        Field(default_factory=dict)
    )
    require: PlacementLabels = Field(
        default_factory=dict,
        description="Labels a worker must have to run it (`conveyor worker --label zone=eu`); "
        "it waits for such a worker.",
    )
    prefer: PlacementLabels = Field(
        default_factory=dict,
        description="Labels of the workers it goes to first: a worker without them takes it "
        "only while every live worker with them is busy (or there is none).",
    )

    @field_validator("args", "kwargs")
    @classmethod
    def _bounded_arguments(cls, value: JSON, info: ValidationInfo) -> JSON:
        if not value:  # `[]` or `{}`: nothing to look at (most tasks have no kwargs)
            return value
        what = str(info.field_name)
        check_json_values(value, what)  # NUL, lone surrogates, NaN: see conveyor.core.text
        return check_json(value, max_bytes=MAX_ARGS_BYTES, what=what)

    @field_validator("handler")
    @classmethod
    def _handler_syntax(cls, value: str) -> str:
        if not _HANDLER.fullmatch(value):  # fullmatch: `$` would let a trailing newline through
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

    @field_validator("depends_on", "limits")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("prefer")
    @classmethod
    def _prefer_agrees_with_require(
        cls, value: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        require = info.data.get("require") or {}
        clash = sorted(k for k, v in value.items() if k in require and require[k] != v)
        if clash:
            raise ValueError(
                f"prefers {clash[0]}={value[clash[0]]!r} but requires "
                f"{clash[0]}={require[clash[0]]!r}: no worker has both"
            )
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
