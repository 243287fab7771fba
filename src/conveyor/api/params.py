"""The parameters of operations: what REST carries in the path and the query string, and the
persistent connection in a frame's `params`. One model per shape, validated the same way on
every transport (REST's strings are read leniently: `?wait=5` is the number 5)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from conveyor.core.spec import Timestamp
from conveyor.core.states import TaskState
from conveyor.core.text import TEXT


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """An operation without parameters."""


Text = Annotated[str, TEXT]
"""Text as the path and the query string carry it: no NUL, no lone surrogate (422)."""
Filter = Annotated[str, Field(min_length=1, max_length=200), TEXT] | None
Labels = Annotated[
    list[Annotated[str, Field(pattern=r"^[^:\u0000]+:[^\u0000]*$", max_length=500), TEXT]] | None,
    Field(max_length=20, description="`key:value`; repeat for several, which must all match."),
]
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
    task_id: Text


class WorkerRef(Params):
    worker_id: Text


class DeregisterParams(WorkerRef):
    stopped: bool = Field(
        default=False,
        description="The worker process runs nothing and will start nothing (it is exiting, "
        "or its machine is down): its tasks go back to the queue at once. Otherwise each goes "
        "back when its lease runs out, so that a worker that does not know yet cannot run a "
        "task while another does.",
    )


class ScheduleRef(Params):
    name: Text


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


class WaitParams(Params):
    wait: Annotated[
        float,
        Field(
            ge=0,
            allow_inf_nan=False,
            description="Seconds to wait for every task to end (at most 60); the answer comes "
            "as soon as all have ended, or then with `done: false` for those still going.",
        ),
    ] = 0


class TaskQuery(Params):
    state: States = None
    queue: Filter = None
    name: Filter = None
    handler: Filter = None
    label: Labels = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    cursor: Cursor = None


class SearchQuery(Params):
    text: Annotated[
        str,
        Field(min_length=1, max_length=200, description="Part of the name, or an id prefix."),
        TEXT,
    ]
    state: States = None
    queue: Filter = None
    handler: Filter = None
    label: Labels = None
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


class BulkRef(Params):
    bulk_id: Text
    wait: Annotated[
        float,
        Field(
            ge=0,
            allow_inf_nan=False,
            description="Seconds to wait for the action to end (at most 60): the answer comes "
            "as soon as it has, or then with its progress so far.",
        ),
    ] = 0


class FailureQuery(Params):
    window: Annotated[
        int, Field(ge=1, le=100_000, description="How many of the newest failures to look at.")
    ] = 10_000
    limit: Annotated[int, Field(ge=1, le=500, description="The most groups to return.")] = 50
