"""The parameters of operations: what REST carries in the path and the query string, and the
persistent connection in a frame's `params`. One model per shape, validated the same way on
every transport (REST's strings are read leniently: `?wait=5` is the number 5)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from conveyor.core.spec import Timestamp
from conveyor.core.states import TaskState


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """An operation without parameters."""


Filter = Annotated[str | None, Field(min_length=1, max_length=200)]
Label = Annotated[str | None, Field(pattern=r"^[^:]+:", max_length=500, description="`key:value`")]
Cursor = Annotated[
    str | None,
    Field(pattern=r"^[1-9][0-9]{0,17}$", description="`next_cursor` of the previous page."),
]
States = Annotated[list[TaskState] | None, Field(description="Repeat for several.")]
MaxNodes = Annotated[int, Field(ge=1, le=2000, description="Draw at most this many tasks.")]
WaitS = Annotated[
    float,
    Field(ge=0, allow_inf_nan=False, description="Seconds to wait for the end (at most 60)."),
]


class TaskRef(Params):
    task_id: str


class WorkerRef(Params):
    worker_id: str


class ScheduleRef(Params):
    name: str


class SubmitParams(Params):
    wait: Annotated[
        float,
        Field(
            ge=0,
            allow_inf_nan=False,
            description="Seconds to wait for the task to end before answering (at most 60): "
            "submit and result in one call. The answer shows the task as it is then.",
        ),
    ] = 0


class ResultParams(TaskRef):
    wait: WaitS = 0


class TaskQuery(Params):
    state: States = None
    queue: Filter = None
    name: Filter = None
    handler: Filter = None
    label: Label = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    cursor: Cursor = None


class SearchQuery(Params):
    text: Annotated[
        str, Field(min_length=1, max_length=200, description="Part of the name, or an id prefix.")
    ]
    state: States = None
    queue: Filter = None
    handler: Filter = None
    label: Label = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    cursor: Cursor = None
    scan: Annotated[
        int, Field(ge=1, le=100_000, description="Look at no more than this many tasks.")
    ] = 10_000


class GraphParams(TaskRef):
    depth: Annotated[int, Field(ge=1, le=50, description="Levels up and down.")] = 2
    max_nodes: MaxNodes = 200


class WorkflowParams(TaskRef):
    max_nodes: MaxNodes = 500


class WorkflowQuery(Params):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    window: Annotated[
        int, Field(ge=1, le=20_000, description="How many of the newest tasks to look at.")
    ] = 2000


class SinceQuery(Params):
    since: Annotated[
        Timestamp | None,
        Field(description="Only history points after this time (what a poller has not seen yet)."),
    ] = None
