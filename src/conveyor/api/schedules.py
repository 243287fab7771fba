"""Wire models of the schedules API: a cron expression that submits a task spec at each firing."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from conveyor.core.schedules import Schedule, ScheduleSpec


class ScheduleIn(ScheduleSpec):
    """A schedule to store; `replace` overwrites one of the same name instead of a 409."""

    replace: StrictBool = False


class ScheduleOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    spec: ScheduleSpec
    next_run_at: datetime
    last_run_at: datetime | None
    created_at: datetime
    fired: int = Field(description="Firings that submitted a task so far.")
    last_error: str | None = Field(
        default=None,
        description="Why the last firing could not submit its task (its dependency was "
        "deleted, say); null once a firing succeeds again. The schedule tries at each firing.",
    )
    last_error_at: datetime | None = None

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            spec=s.spec,
            next_run_at=s.next_run_at,
            last_run_at=s.last_run_at,
            created_at=s.created_at,
            fired=s.fired,
            last_error=s.last_error,
            last_error_at=s.last_error_at,
        )


class ScheduleList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schedules: list[ScheduleOut]
