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

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            spec=s.spec,
            next_run_at=s.next_run_at,
            last_run_at=s.last_run_at,
            created_at=s.created_at,
            fired=s.fired,
        )


class ScheduleList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schedules: list[ScheduleOut]
