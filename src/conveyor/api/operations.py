"""Every operation of the API, declared once: name, method and path, access, parameters, body,
answer. Nothing else says what an operation is.

From these declarations the server builds its REST routes, /openapi.json and its auth table
(conveyor.server.rest, conveyor.server.auth) and serves the same operations over the persistent
connection (conveyor.server.stream); the clients build their calls from them
(conveyor.client.calls). The server implements each one exactly once, by name
(conveyor.server.operations: `implements`), and refuses to start if one is missing or doubled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from conveyor.api import access
from conveyor.api.access import Access
from conveyor.api.control import (
    PauseList,
    PauseOut,
    PauseParams,
    PauseQueueParams,
    PauseScheduleParams,
    QueueRef,
    ResumeOut,
    WorkerSelection,
)
from conveyor.api.limits import LimitIn, LimitList, LimitOut, LimitRef
from conveyor.api.params import (
    BulkRef,
    DeregisterParams,
    FailureQuery,
    GraphParams,
    NoParams,
    Params,
    ResultParams,
    ScheduleRef,
    SearchQuery,
    SinceQuery,
    SubmitParams,
    TaskQuery,
    TaskRef,
    WaitParams,
    WorkerRef,
    WorkflowParams,
    WorkflowQuery,
)
from conveyor.api.schedules import ScheduleIn, ScheduleList, ScheduleOut
from conveyor.api.schemas import (
    API_PREFIX,
    BatchIn,
    BatchOut,
    BulkIn,
    BulkOut,
    FailuresOut,
    GraphOut,
    HealthOut,
    HeartbeatIn,
    HeartbeatOut,
    LeaseIn,
    LeaseOut,
    MonitorOut,
    RegisterIn,
    RegisterOut,
    ReportBatchIn,
    ReportBatchOut,
    ResultOut,
    ResultsOut,
    StatusHistoryOut,
    StatusOut,
    TaskDetail,
    TaskIds,
    TaskOut,
    TaskPage,
    TaskSearchPage,
    WorkerList,
    WorkerOut,
    WorkflowList,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.why import WhyAnswer

NOT_FOUND = 404
CONFLICT = 409


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation. `params` holds what REST puts in the path (the names in `path`) and the
    query string; `body` the JSON body (None: no body); `answer` the JSON answer (None: 204)."""

    name: str
    method: str
    path: str
    access: Access | None
    summary: str
    params: type[Params] = NoParams
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    """Statuses this operation answers beyond the ones every operation may (401, 403, 413, 422,
    503): 404 for an unknown id, 409 for a state conflict."""
    also: Mapping[int, str] = field(default_factory=dict)
    """Other successful or partial answers with the same body, and what they mean."""
    hold: str | None = None
    """The parameter or body field (seconds) for which the server may hold the answer (a long
    poll): a client waits that much longer before it gives up."""
    produces: tuple[str, str] | None = None
    """(parameter, JSON pointer): the answer holds, at the pointer, the value of that parameter
    of other operations (a new task's id): documented as OpenAPI links."""
    acts_for_worker: bool = False
    """Acts for the worker in the path: needs that worker's secret unless the caller is admin."""
    root: bool = False
    """At the server's root (/health), not under the API prefix."""
    tag: str = ""

    @property
    def url_path(self) -> str:
        return self.path if self.root else API_PREFIX + self.path

    @property
    def path_names(self) -> frozenset[str]:
        return frozenset(
            part[1:-1]
            for part in self.path.split("/")
            if part.startswith("{") and part.endswith("}")
        )

    def hold_s(self, params: BaseModel, body: BaseModel | None) -> float:
        """How long the server may hold this call's answer, from its own parameters."""
        if self.hold is None:
            return 0.0
        where: Any = body if self.hold in (self.body.model_fields if self.body else {}) else params
        return float(getattr(where, self.hold, 0.0) or 0.0)


def _task(name: str, method: str, path: str, summary: str, **kw: Any) -> Operation:
    return Operation(name, method, path, access.CLIENT, summary, tag="tasks", **kw)


# ---- tasks ------------------------------------------------------------------------------------

SUBMIT = _task(
    "submit", "POST", "/tasks",
    "Submit one task. A spec whose `key` was submitted before returns the first task (200).",
    params=SubmitParams, body=TaskSpec, answer=TaskOut, status=201,
    also={200: "The key was used before: the first task."}, hold="wait",
    produces=("task_id", "/id"),
)  # fmt: skip
SUBMIT_BATCH = _task(
    "submit_batch", "POST", "/tasks/batch",
    "Submit many tasks, all or none; `depends_on` may name other tasks of the batch.",
    body=BatchIn, answer=BatchOut, status=201, produces=("task_id", "/tasks/0/id"),
)  # fmt: skip
LIST_TASKS = _task(
    "list_tasks", "GET", "/tasks", "Tasks, newest first, a page at a time.",
    params=TaskQuery, answer=TaskPage,
)  # fmt: skip
GET_TASK = _task(
    "get_task", "GET", "/tasks/{task_id}",
    "One task with its attempts and the tasks that depend on it.",
    params=TaskRef, answer=TaskDetail, errors=(NOT_FOUND,),
)  # fmt: skip
GET_RESULT = _task(
    "get_result", "GET", "/tasks/{task_id}/result",
    "The task's result; with `wait`, answers as soon as the task ends, or after `wait` seconds "
    "with `done: false`.",
    params=ResultParams, answer=ResultOut, errors=(NOT_FOUND,), hold="wait",
)  # fmt: skip
WAIT_RESULTS = _task(
    "wait_results", "POST", "/tasks/results",
    "The results of many tasks at once, in the order asked; with `wait`, answers as soon as "
    "every one has ended, or after `wait` seconds with `done: false` for those still going. "
    "An unknown id is 404.",
    params=WaitParams, body=TaskIds, answer=ResultsOut, errors=(NOT_FOUND,), hold="wait",
)  # fmt: skip
CANCEL_TASK = _task(
    "cancel_task", "POST", "/tasks/{task_id}/cancel",
    "Cancel a pending, queued or running task (a running one is killed on its worker).",
    params=TaskRef, answer=TaskOut, errors=(NOT_FOUND, CONFLICT),
)  # fmt: skip
RETRY_TASK = _task(
    "retry_task", "POST", "/tasks/{task_id}/retry",
    "Run a failed, timed-out or cancelled task again.",
    params=TaskRef, answer=TaskOut, errors=(NOT_FOUND, CONFLICT),
)  # fmt: skip
WHY_TASK = _task(
    "why_task", "GET", "/tasks/{task_id}/why",
    "Why the task is not running, most immediate reason first: the dependencies it waits for, "
    "its start time or retry backoff, a pause of its queue or of the cluster, a full limit, no "
    "live worker serving its queue or none that can run it (what each lacks), every able "
    "worker busy (and how many tasks come first). `unschedulable` says no live worker could "
    "ever take it.",
    params=TaskRef, answer=WhyAnswer, errors=(NOT_FOUND,),
)  # fmt: skip
DELETE_TASK = _task(
    "delete_task", "DELETE", "/tasks/{task_id}",
    "Remove a task that is not running, with its attempts.",
    params=TaskRef, status=204, errors=(NOT_FOUND, CONFLICT),
)  # fmt: skip

# ---- bulk actions -----------------------------------------------------------------------------

BULK_ACTION = _task(
    "bulk_action", "POST", "/tasks/bulk",
    "Retry, cancel or delete every task a filter selects, by the rules of the single-task "
    "operations. Answers at once (202) with the action's record, which `GET /bulk/{bulk_id}` "
    "follows: the server changes the tasks in the background, `chunk_size` per transaction. "
    "With `dry_run`, changes nothing and says how many tasks would change, with a sample (200).",
    body=BulkIn, answer=BulkOut, status=202, errors=(CONFLICT,),
    also={200: "A dry run, or a `key` asked before: that action as it is now."},
    produces=("bulk_id", "/id"),
)  # fmt: skip
GET_BULK = _task(
    "get_bulk", "GET", "/bulk/{bulk_id}",
    "A bulk action's progress: tasks matched, changed and skipped so far, and whether it is "
    "done; with `wait`, answers as soon as it is done, or after `wait` seconds.",
    params=BulkRef, answer=BulkOut, errors=(NOT_FOUND,), hold="wait",
)  # fmt: skip

# ---- workers ----------------------------------------------------------------------------------

REGISTER_WORKER = Operation(
    "register_worker", "POST", "/workers", access.WORKER,
    "Register a worker; the answer says how often to heartbeat, how long leases last, and the "
    "worker's own secret.",
    body=RegisterIn, answer=RegisterOut, status=201, tag="workers",
)  # fmt: skip
HEARTBEAT = Operation(
    "heartbeat", "POST", "/workers/{worker_id}/heartbeat", access.WORKER,
    "Extend the leases the worker holds; `stop` lists the executions it must kill. With "
    "`wait_s`, an answer with nothing to say is held until there is (a cancel, a drain) or "
    "`wait_s` has passed.",
    params=WorkerRef, body=HeartbeatIn, answer=HeartbeatOut, errors=(NOT_FOUND, CONFLICT),
    hold="wait_s", acts_for_worker=True, tag="workers",
)  # fmt: skip
LEASE = Operation(
    "lease", "POST", "/workers/{worker_id}/lease", access.WORKER,
    "Lease up to `max` ready tasks. With `wait_s`, a long-poll: when nothing is ready, the "
    "answer comes as soon as a task is, or after `wait_s` seconds with no tasks (the server may "
    "cap the wait lower: `conveyor server --max-wait-s`). With `follow`, on the persistent "
    "connection, the call goes on answering as tasks get ready, up to `max` in all.",
    params=WorkerRef, body=LeaseIn, answer=LeaseOut, errors=(NOT_FOUND, CONFLICT),
    hold="wait_s", acts_for_worker=True, tag="workers",
)  # fmt: skip
REPORT = Operation(
    "report", "POST", "/workers/{worker_id}/report", access.WORKER,
    "Record finished attempts. Each report is acknowledged on its own; a stale one (its lease "
    "was lost, re-granted or cancelled) is refused and changes nothing.",
    params=WorkerRef, body=ReportBatchIn, answer=ReportBatchOut,
    also={409: "No report was accepted: all were stale."}, acts_for_worker=True, tag="workers",
)  # fmt: skip
LIST_WORKERS = Operation(
    "list_workers", "GET", "/workers", access.CLIENT,
    "Every registered worker (dead ones too, not deregistered ones), with its running tasks.",
    answer=WorkerList, tag="workers",
)  # fmt: skip
GET_WORKER = Operation(
    "get_worker", "GET", "/workers/{worker_id}", access.CLIENT,
    "One worker with its running tasks; 404 once deregistered.",
    params=WorkerRef, answer=WorkerOut, errors=(NOT_FOUND,), tag="workers",
)  # fmt: skip
DEREGISTER_WORKER = Operation(
    "deregister_worker", "DELETE", "/workers/{worker_id}", access.WORKER,
    "Deregister a worker; its tasks are queued again without spending a retry, each when its "
    "lease runs out, or at once with `stopped`. An admin may deregister any worker; a worker "
    "token only itself, with its secret.",
    params=DeregisterParams, status=204, errors=(NOT_FOUND,), acts_for_worker=True, tag="workers",
)  # fmt: skip

# ---- schedules --------------------------------------------------------------------------------

ADD_SCHEDULE = Operation(
    "add_schedule", "POST", "/schedules", access.CLIENT,
    "Store a schedule; 409 if the name is taken, unless `replace` is true.",
    body=ScheduleIn, answer=ScheduleOut, status=201, errors=(CONFLICT,), tag="schedules",
    produces=("name", "/spec/name"),
)  # fmt: skip
LIST_SCHEDULES = Operation(
    "list_schedules", "GET", "/schedules", access.CLIENT, "Every schedule.",
    answer=ScheduleList, tag="schedules",
)  # fmt: skip
GET_SCHEDULE = Operation(
    "get_schedule", "GET", "/schedules/{name}", access.CLIENT, "One schedule.",
    params=ScheduleRef, answer=ScheduleOut, errors=(NOT_FOUND,), tag="schedules",
)  # fmt: skip
REMOVE_SCHEDULE = Operation(
    "remove_schedule", "DELETE", "/schedules/{name}", access.CLIENT,
    "Remove a schedule (tasks it already submitted stay).",
    params=ScheduleRef, status=204, errors=(NOT_FOUND,), tag="schedules",
)  # fmt: skip

# ---- the system -------------------------------------------------------------------------------

STATUS = Operation(
    "status", "GET", "/status", access.CLIENT,
    "Tasks by state and by queue, workers alive, and tasks finished in the last minute as seen "
    "by this server (each server counts what it committed).",
    answer=StatusOut, tag="system",
)  # fmt: skip
STATUS_HISTORY = Operation(
    "status_history", "GET", "/status/history", access.CLIENT,
    "Tasks by state and tasks finished, every few seconds over the last minutes, as sampled by "
    "this server (each server keeps its own, in memory, since it started).",
    params=SinceQuery, answer=StatusHistoryOut, tag="system",
)  # fmt: skip
MONITOR = Operation(
    "monitor", "GET", "/monitor", access.CLIENT,
    "CPU, memory, disk, network and GPUs of the server's host, and each live worker's last "
    "heartbeat metrics, with the short history this server keeps of both.",
    params=SinceQuery, answer=MonitorOut, tag="system",
)  # fmt: skip
HEALTH = Operation(
    "health", "GET", "/health", access.OPEN,
    "Whether the server can use its database.",
    answer=HealthOut, also={503: "The server cannot use its database."}, root=True, tag="system",
)  # fmt: skip

# ---- the dashboard's views --------------------------------------------------------------------

LIST_FAILURES = Operation(
    "list_failures", "GET", "/failures", access.CLIENT,
    "The newest failed and timed-out tasks grouped by error message, the largest groups first, "
    "each with the filter of a bulk action that retries exactly that group.",
    params=FailureQuery, answer=FailuresOut, tag="views",
)  # fmt: skip

SEARCH_TASKS = Operation(
    "search_tasks", "GET", "/search/tasks", access.CLIENT,
    "Tasks whose name contains `text` (any case) or whose id starts with it, newest first, with "
    "the same filters as `GET /tasks`. One call looks at no more than `scan` tasks, so it "
    "answers quickly on any database; a page may then hold fewer than `limit` tasks while "
    "`next_cursor` still continues the search further back.",
    params=SearchQuery, answer=TaskSearchPage, tag="views",
)  # fmt: skip
TASK_GRAPH = Operation(
    "task_graph", "GET", "/tasks/{task_id}/graph", access.CLIENT,
    "The task with its dependencies (up) and dependents (down), `depth` levels each way.",
    params=GraphParams, answer=GraphOut, errors=(NOT_FOUND,), tag="views",
)  # fmt: skip
LIST_WORKFLOWS = Operation(
    "list_workflows", "GET", "/workflows", access.CLIENT,
    "Recent workflows (tasks linked by dependencies), the most recently updated first.",
    params=WorkflowQuery, answer=WorkflowList, tag="views",
)  # fmt: skip
GET_WORKFLOW = Operation(
    "get_workflow", "GET", "/workflows/{task_id}", access.CLIENT,
    "The whole workflow of a task: every task linked to it by dependencies, either way.",
    params=WorkflowParams, answer=GraphOut, errors=(NOT_FOUND,), tag="views",
)  # fmt: skip

# ---- the operator's controls: pauses, drains --------------------------------------------------

PAUSE_QUEUE = Operation(
    "pause_queue", "POST", "/queues/{queue}/pause", access.ADMIN,
    "Lease nothing more from the queue, on any server, until it is resumed or until `until`. "
    "Its running tasks finish; submitting to it goes on.",
    params=PauseQueueParams, answer=PauseOut, tag="control",
)  # fmt: skip
RESUME_QUEUE = Operation(
    "resume_queue", "POST", "/queues/{queue}/resume", access.ADMIN,
    "Lease from the queue again (`resumed: false` if it was not paused).",
    params=QueueRef, answer=ResumeOut, tag="control",
)  # fmt: skip
PAUSE_SCHEDULE = Operation(
    "pause_schedule", "POST", "/schedules/{name}/pause", access.ADMIN,
    "Fire the schedule no more until it is resumed or until `until`; the firings it misses "
    "meanwhile follow its misfire policy then.",
    params=PauseScheduleParams, answer=PauseOut, errors=(NOT_FOUND,), tag="control",
)  # fmt: skip
RESUME_SCHEDULE = Operation(
    "resume_schedule", "POST", "/schedules/{name}/resume", access.ADMIN,
    "Let the schedule fire again (`resumed: false` if it was not paused).",
    params=ScheduleRef, answer=ResumeOut, tag="control",
)  # fmt: skip
PAUSE_ALL = Operation(
    "pause_all", "POST", "/pause", access.ADMIN,
    "Lease nothing from any queue, on any server, until resumed or until `until`. Running "
    "tasks finish; submitting and schedules go on.",
    params=PauseParams, answer=PauseOut, tag="control",
)  # fmt: skip
RESUME_ALL = Operation(
    "resume_all", "POST", "/resume", access.ADMIN,
    "End the pause of every queue (queues paused on their own stay paused).",
    answer=ResumeOut, tag="control",
)  # fmt: skip
LIST_PAUSES = Operation(
    "list_pauses", "GET", "/pauses", access.CLIENT,
    "What is paused now: the cluster, queues, schedules, each with its end if it has one.",
    answer=PauseList, tag="control",
)  # fmt: skip
DRAIN_WORKERS = Operation(
    "drain_workers", "POST", "/workers/drain", access.ADMIN,
    "Tell workers, by id or by the queue they serve and the host they run on, to drain: lease "
    "nothing more, let their running tasks finish, and exit. Each hears it at its next "
    "heartbeat. 404 for an unknown id, 409 for one dead or deregistered.",
    body=WorkerSelection, answer=WorkerList, errors=(NOT_FOUND, CONFLICT), tag="control",
)  # fmt: skip
STOP_WORKERS = Operation(
    "stop_workers", "POST", "/workers/stop", access.ADMIN,
    "Like drain, but the workers hand their running tasks back at once (they run again "
    "elsewhere, without spending a retry) and exit.",
    body=WorkerSelection, answer=WorkerList, errors=(NOT_FOUND, CONFLICT), tag="control",
)  # fmt: skip

# ---- the operator's controls: concurrency and rate limits -------------------------------------

SET_LIMIT = Operation(
    "set_limit", "PUT", "/limits/{limit}", access.ADMIN,
    "Store a limit, or replace the one of that name: at most `concurrency` of the tasks that "
    "take it running at once, and/or at most `rate` of them started in any `per_s` seconds, "
    "for each of its keys. Leases on every server keep to it from the moment it is stored. A "
    "task takes it by naming it in its `limits`: `NAME`, or `NAME:KEY` for a bucket per key.",
    params=LimitRef, body=LimitIn, answer=LimitOut, tag="control",
)  # fmt: skip
LIST_LIMITS = Operation(
    "list_limits", "GET", "/limits", access.CLIENT,
    "Every limit, with the tasks running that take it and the tasks it holds back.",
    answer=LimitList, tag="control",
)  # fmt: skip
GET_LIMIT = Operation(
    "get_limit", "GET", "/limits/{limit}", access.CLIENT,
    "One limit, with the tasks running that take it and the tasks it holds back.",
    params=LimitRef, answer=LimitOut, errors=(NOT_FOUND,), tag="control",
)  # fmt: skip
DELETE_LIMIT = Operation(
    "delete_limit", "DELETE", "/limits/{limit}", access.ADMIN,
    "Remove a limit: it holds nothing back any more (the tasks it held go as leases reach them).",
    params=LimitRef, status=204, errors=(NOT_FOUND,), tag="control",
)  # fmt: skip


OPERATIONS: Mapping[str, Operation] = {
    op.name: op
    for op in (
        SUBMIT, SUBMIT_BATCH, LIST_TASKS, GET_TASK, GET_RESULT, WAIT_RESULTS, CANCEL_TASK, RETRY_TASK,
        DELETE_TASK, WHY_TASK, REGISTER_WORKER, HEARTBEAT, LEASE, REPORT, LIST_WORKERS, GET_WORKER,
        DEREGISTER_WORKER, ADD_SCHEDULE, LIST_SCHEDULES, GET_SCHEDULE, REMOVE_SCHEDULE, STATUS,
        STATUS_HISTORY, MONITOR, HEALTH, SEARCH_TASKS, TASK_GRAPH, LIST_WORKFLOWS, GET_WORKFLOW,
        PAUSE_QUEUE, RESUME_QUEUE, PAUSE_SCHEDULE, RESUME_SCHEDULE, PAUSE_ALL, RESUME_ALL,
        LIST_PAUSES, DRAIN_WORKERS, STOP_WORKERS, SET_LIMIT, LIST_LIMITS, GET_LIMIT, DELETE_LIMIT,
        BULK_ACTION, GET_BULK, LIST_FAILURES,
    )
}  # fmt: skip
"""Every operation by name: the one list the server, the clients and the docs read."""


def operations() -> Iterator[Operation]:
    return iter(OPERATIONS.values())
