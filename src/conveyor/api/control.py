"""Wire models of the operator's controls: pausing and resuming queues, schedules and the whole
cluster (conveyor.core.pauses), and draining or stopping workers from the server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from conveyor.api.params import Params
from conveyor.api.schemas import Id, Name, Queue, Request, Response
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.spec import NAME_PATTERN, QUEUE_PATTERN, Timestamp

MAX_DRAIN_IDS = 1000

Until = Annotated[
    Timestamp | None,
    Field(
        description="When the pause ends by itself (ISO 8601, in the future); left out: when "
        "it is resumed. Pausing what is paused already sets its new end."
    ),
]


class PauseParams(Params):
    until: Until = None


class QueueRef(Params):
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)]


class PauseQueueParams(QueueRef):
    until: Until = None


class PauseScheduleParams(Params):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    until: Until = None


class PauseOut(Response):
    scope: PauseScope = Field(description="`queue`, `schedule`, or `all` (every queue).")
    name: str = Field(description="The queue or schedule; empty for `all`.")
    paused_at: datetime
    until: datetime | None = Field(description="When it ends by itself; null: when resumed.")

    @classmethod
    def of(cls, p: Pause) -> PauseOut:
        return cls(scope=p.scope, name=p.name, paused_at=p.paused_at, until=p.until)


class PauseList(Response):
    pauses: list[PauseOut] = Field(description="The pauses that hold now: all first, then by name.")


class ResumeOut(Response):
    resumed: bool = Field(description="False: it was not paused (nothing changed).")
    pause: PauseOut | None = Field(description="The pause that ended.")

    @classmethod
    def of(cls, ended: Pause | None) -> ResumeOut:
        return cls(resumed=ended is not None, pause=None if ended is None else PauseOut.of(ended))


class WorkerSelection(Request):
    """The workers to tell: those with these ids, or else every live worker serving `queue` and
    running on `host` (either may be left out, not both)."""

    ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_DRAIN_IDS)] | None = None
    queue: Queue | None = None
    host: Name | None = None
