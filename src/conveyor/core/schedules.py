"""Cron schedules: a named cron expression in a timezone that submits a task spec at each firing.

Missed firings (the servers were down, or busy) follow the schedule's `misfire` policy:

- `once` (default): however many firings were missed, run one now, then resume the timetable.
- `skip`: run none of the missed firings; wait for the next one on the timetable.
- `all`: run every missed firing (at most MAX_CATCH_UP), then resume the timetable.

A firing is "missed" when it is found more than `grace_s` (default 60 s) after its time.

**Cron grammar.** Five fields (minute hour day month weekday), or six with seconds last,
separated by spaces. Each field is a comma-separated list of `*`, `*/STEP`, `N`, `A-B` or `A-B/STEP`
with A < B (months: no `A-B/STEP`); months may be `jan`..`dec` and weekdays `sun`..`sat` (any
case), weekday 7 is Sunday too. The JSON schema carries this grammar as a pattern and validation applies the same pattern,
so what the schema allows is what the server accepts. Two things in it are refused that croniter
would take: `5-5`-style ranges (croniter reads them as `*`) and expressions that can never fire
(day 30 or 31 only in months that lack it, with a weekday field holding `*`: `0 0 31 2 *`); the
pattern itself excludes the latter. Not supported: `?`, `L`, `W`, `#`, `@daily`-style names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    GetPydanticSchema,
    create_model,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from conveyor.core.spec import NAME_PATTERN, Number, TaskSpec

MAX_CATCH_UP = 100
MAX_CRON_LENGTH = 200
"""Far more than any cron expression a person writes; a longer one is refused before the grammar
is matched against it (a 200 KB expression took seconds to match)."""
MAX_TIMEZONE_LENGTH = 64
DEFAULT_GRACE_S = 60.0


class Misfire(StrEnum):
    ONCE = "once"
    SKIP = "skip"
    ALL = "all"


# ---- the cron grammar, as a regular expression (the same one in the JSON schema) ---------------

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SHORT_MONTHS = frozenset({2, 4, 6, 9, 11})  # fewer than 31 days (February: 29 at most)


def _digits(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}{hi}]" if hi == lo + 1 else f"[{lo}-{hi}]"


def _number(n: int) -> str:
    return f"0?{n}" if n < 10 else str(n)


def _numbers(lo: int, hi: int) -> str:
    """A regex for the integers lo..hi (0 <= lo <= hi < 100); one-digit ones may have a 0 first."""
    parts: list[str] = []
    if lo <= 9:
        parts.append("0?" + _digits(lo, min(hi, 9)))
        lo = 10
    while lo <= hi:
        decade = lo // 10
        if lo % 10 == 0 and hi >= lo + 9:  # whole decades at once
            last = (hi + 1) // 10 - 1
            parts.append(_digits(decade, last) + "[0-9]")
            lo = (last + 1) * 10
        else:
            top = min(hi, decade * 10 + 9)
            parts.append(f"{decade}{_digits(lo % 10, top % 10)}")
            lo = top + 1
    return "(?:" + "|".join(parts) + ")"


def _name(name: str) -> str:
    return "".join(f"[{c.upper()}{c}]" for c in name)


def _field(lo: int, hi: int, names: tuple[str, ...] = (), *, range_steps: bool = True) -> str:
    step = "/" + _numbers(1, hi)
    ranges = [f"{_number(a)}-{_numbers(a + 1, hi)}" for a in range(lo, hi)]
    ranges += [
        f"{_name(a)}-(?:{'|'.join(_name(b) for b in names[i + 1 :])})"
        for i, a in enumerate(names[:-1])
    ]
    value = _numbers(lo, hi) + ("|" + "|".join(_name(n) for n in names) if names else "")
    range_step = f"(?:{step})?" if range_steps else ""
    item = rf"(?:\*(?:{step})?|(?:{'|'.join(ranges)}){range_step}|{value})"
    return f"{item}(?:,{item})*"


def _months_within(allowed: frozenset[int]) -> str:
    """A month list whose months all lie in `allowed`: single months (`*`, `*/STEP` and every
    range A-B with A < B include a month of 31 days, so none of them can qualify)."""
    singles = [form for m in sorted(allowed) for form in (_number(m), _name(MONTHS[m - 1]))]
    item = "(?:" + "|".join(singles) + ")"
    return f"{item}(?:,{item})*"


def _never_fires() -> str:
    """Lookaheads refusing day lists that start at 30 or later in months that never reach them,
    when the weekday field holds a bare `*` (croniter then ignores the weekday; a weekday field
    without one would fire on those weekdays instead)."""
    day_step = "(?:/" + _numbers(1, 31) + ")?"
    from_30 = f"(?:(?:3[01]|30-31){day_step})"
    only_31 = "31"
    rest = r"\S+ +\S+ +"
    weekday_any = r" +(?:[^ ]*,)?\*(?:,[^ ]*)?(?: |$)"  # a bare `*` among its items
    return (
        f"(?!{rest}{from_30}(?:,{from_30})* +{_months_within(frozenset({2}))}{weekday_any})"
        f"(?!{rest}{only_31}(?:,{only_31})* +{_months_within(SHORT_MONTHS)}{weekday_any})"
    )


def _cron_syntax() -> str:
    fields = [
        _field(0, 59),
        _field(0, 23),
        _field(1, 31),
        _field(1, 12, MONTHS, range_steps=False),
        _field(0, 7, WEEKDAYS),
    ]
    return " +".join(fields) + f"(?: +{_field(0, 59)})?"


CRON_SYNTAX = re.compile(_cron_syntax())
CRON_PATTERN = "^" + _never_fires() + _cron_syntax() + "$"
_CRON = re.compile(CRON_PATTERN)


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$"
"""The shape of every IANA timezone name, for the JSON schema. Which names exist is up to the
host's timezone database, so validation checks the name against it (`known_timezones`) and the
schema, the same on every host, says so in words instead of listing the names."""


def _scheduled_task_spec() -> type[BaseModel]:
    """The JSON schema of a schedule's task: a TaskSpec whose `run_at` and `key` are null.

    Only a JSON schema: a schedule's task is validated as a TaskSpec (`_no_fixed_start` refuses
    the two fields), so that Python callers pass TaskSpecs. Built from TaskSpec's own fields,
    so the two cannot drift; `allOf[TaskSpec, {run_at: null, key: null}]` said the same, but
    client generators cannot merge a string with null and dropped the schedule operations."""
    firing = "Always null: each firing gives its task a start time and an idempotency key."
    fields: dict[str, Any] = {
        name: (None, Field(default=None, description=firing))
        if name in ("run_at", "key")
        else (info.annotation, info)
        for name, info in TaskSpec.model_fields.items()
    }
    return create_model(
        "ScheduledTaskSpec",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__="The task a schedule submits at each firing: a task spec without `run_at` and "
        "`key`, which each firing gives it.",
        **fields,
    )


_SCHEDULED_TASK_SPEC = _scheduled_task_spec()


def _scheduled_task_schema(_: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
    return handler(_SCHEDULED_TASK_SPEC.__pydantic_core_schema__)


class ScheduleSpec(BaseModel):
    """A schedule as a user defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    cron: str = Field(
        max_length=MAX_CRON_LENGTH,
        description="Five fields (minute hour day month weekday), or six with seconds last; "
        "each a list of `*`, `*/STEP`, `N`, `A-B` or `A-B/STEP` (A < B; months: no `A-B/STEP`), "
        "names for months and weekdays. Expressions that can never fire (`0 0 31 2 *`) are refused.",
        json_schema_extra={"pattern": CRON_PATTERN},
    )
    timezone: str = Field(
        default="UTC",
        max_length=MAX_TIMEZONE_LENGTH,
        description="An IANA timezone name such as `Europe/Paris`, known to the server's "
        "timezone database; an unknown name is refused (422).",
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
    )
    task: Annotated[
        TaskSpec, GetPydanticSchema(get_pydantic_json_schema=_scheduled_task_schema)
    ] = Field(description="Submitted at each firing, with the firing's time and key.")
    misfire: Misfire = Misfire.ONCE
    grace_s: Annotated[Number, Field(ge=0, le=86_400)] = DEFAULT_GRACE_S

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not CRON_SYNTAX.fullmatch(value) or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression such as '*/5 * * * *' (five fields, or six "
                "with seconds last; each a list of *, */STEP, N, A-B or A-B/STEP with A < B)"
            )
        if not _CRON.fullmatch(value):
            raise ValueError(f"{value!r} never fires: no month it names has those days")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in known_timezones():
            raise ValueError(f"unknown timezone {value!r}; use an IANA name such as 'Europe/Paris'")
        return value

    @field_validator("task")
    @classmethod
    def _no_fixed_start(cls, value: TaskSpec) -> TaskSpec:
        if value.run_at is not None or value.key is not None:
            raise ValueError("a scheduled task takes its start time and key from each firing")
        return value


@dataclass(slots=True)
class Schedule:
    """A stored schedule: its definition and where it is in its timetable."""

    spec: ScheduleSpec
    next_run_at: datetime
    created_at: datetime
    last_run_at: datetime | None = None
    fired: int = 0
    last_error: str | None = None
    """Why the last firing could not submit its task (None once a firing succeeds again)."""
    last_error_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def next_after(cron: str, timezone: str, after: datetime) -> datetime:
    """The first firing strictly after `after`, in UTC, computed in the schedule's timezone."""
    local = after.astimezone(ZoneInfo(timezone))
    fire: datetime = croniter(cron, local).get_next(datetime)
    return fire.astimezone(after.tzinfo)


@dataclass(frozen=True, slots=True)
class Firings:
    times: list[datetime]
    """The firing times to submit a task for now, oldest first."""
    next_run_at: datetime


def due_firings(spec: ScheduleSpec, next_run_at: datetime, now: datetime) -> Firings:
    """What a schedule due at `next_run_at` runs when looked at `now`, by its misfire policy."""
    if next_run_at > now:
        return Firings([], next_run_at)
    missed: list[datetime] = []
    fire = next_run_at
    while fire <= now and len(missed) <= MAX_CATCH_UP:
        missed.append(fire)
        fire = next_after(spec.cron, spec.timezone, fire)
    following = fire if fire > now else next_after(spec.cron, spec.timezone, now)
    on_time = [t for t in missed if (now - t) <= timedelta(seconds=spec.grace_s)]
    late = [t for t in missed if t not in on_time]
    if not late:
        return Firings(on_time, following)
    if spec.misfire is Misfire.ALL:
        return Firings(missed[:MAX_CATCH_UP], following)
    if spec.misfire is Misfire.SKIP:
        return Firings(on_time, following)
    return Firings(on_time or [late[-1]], following)


def firing_key(name: str, fire: datetime) -> str:
    """The idempotency key of one firing's task: a firing submits at most one task, ever."""
    return f"schedule:{name}:{fire.isoformat()}"
