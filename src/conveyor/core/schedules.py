"""Cron schedules: a named cron expression in a timezone that submits a task spec at each firing.

Missed firings (the servers were down, or busy) follow the schedule's `misfire` policy:

- `once` (default): however many firings were missed, run one now, then resume the timetable.
- `skip`: run none of the missed firings; wait for the next one on the timetable.
- `all`: run every missed firing (at most MAX_CATCH_UP), then resume the timetable.

A firing is "missed" when it is found more than `grace_s` (default 60 s) after its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.core.spec import NAME_PATTERN, TaskSpec

MAX_CATCH_UP = 100
DEFAULT_GRACE_S = 60.0


class Misfire(StrEnum):
    ONCE = "once"
    SKIP = "skip"
    ALL = "all"


class ScheduleSpec(BaseModel):
    """A schedule as a user defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    cron: str = Field(
        description="Five fields (minute hour day month weekday), or six with seconds last."
    )
    timezone: str = "UTC"
    task: TaskSpec
    misfire: Misfire = Misfire.ONCE
    grace_s: Annotated[float, Field(ge=0, le=86_400)] = DEFAULT_GRACE_S

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) not in (5, 6):
            raise ValueError(f"{value!r} is not a cron expression such as '*/5 * * * *'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as 'Europe/Paris'"
            ) from None
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
