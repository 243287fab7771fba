"""Why a task is not running: every reason that holds it back, from what the store says now.
Pure: the engine reads (engine/why.py), this decides.

A pending task waits for its dependencies or its start time (or its retry's backoff); a queued
one for a lease, which a pause, a full limit, the lack of a live worker that serves its queue
and can run it, or the workers' being busy may keep from it. The workers' part is answered for
pending tasks too, as a forecast: a task that no live worker could ever take will not run when
its dependencies are done either, and it is counted as unschedulable (`could_take`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from conveyor.core.capabilities import unmet
from conveyor.core.models import Task, Worker, WorkerState
from conveyor.core.pauses import Pause, PauseScope
from conveyor.core.states import TaskState


class WaitCode(StrEnum):
    DEPENDENCIES = "dependencies"
    """Dependencies that have not succeeded yet (`tasks`)."""
    START_TIME = "start_time"
    """Its `run_at` (or `delay_s`) has not come (`until`)."""
    BACKOFF = "backoff"
    """A failed attempt's retry waits out its backoff (`until`)."""
    DUE = "due"
    """Nothing left to wait for: the timers queue it at their next pass."""
    PAUSED = "paused"
    """Its queue, or the whole cluster, is paused (`pause`, `until`)."""
    LIMIT = "limit"
    """A limit it takes is full (`limit`, `ahead`, `until`)."""
    NO_WORKER = "no_worker"
    """No live worker serves its queue."""
    NO_CAPABLE_WORKER = "no_capable_worker"
    """Live workers serve its queue, but none has what it needs (`workers`: what each lacks)."""
    WORKERS_BUSY = "workers_busy"
    """Every worker that could take it is busy (`busy`); `ahead` tasks come first."""
    READY = "ready"
    """A worker that can take it has a free slot: it starts at that worker's next lease,
    after the `ahead` tasks before it."""
    RUNNING = "running"
    """It runs (on `workers`): nothing holds it back."""
    FINISHED = "finished"
    """It has ended: nothing will run it unless it is retried."""


class WaitReason(BaseModel):
    """One reason, with the details that go with its code."""

    code: WaitCode
    message: str = Field(description="The reason in a sentence, as `conveyor why` shows it.")
    tasks: list[str] = Field(
        default_factory=list, description="`dependencies`: the ids of those not succeeded yet."
    )
    until: datetime | None = Field(
        default=None, description="When the wait ends, if it ends at a known time."
    )
    pause: str | None = Field(
        default=None, description="`paused`: the queue paused, or `*` for the whole cluster."
    )
    limit: str | None = Field(default=None, description="`limit`: the key of the full limit.")
    workers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="`no_capable_worker`: each live worker of the queue (by id) with what it "
        "lacks; `running`: the worker that runs it.",
    )
    busy: int | None = Field(
        default=None, description="`workers_busy`/`ready`: workers able to take it that are busy."
    )
    ahead: int | None = Field(
        default=None,
        description="Queued tasks that come before it (by priority, then submission), counted "
        "up to AHEAD_CAP; for `limit`, those held on the same key.",
    )


class WhyAnswer(BaseModel):
    """Why a task is not running (`GET /tasks/{task_id}/why`, `client.why(task_id)`)."""

    task_id: str
    state: TaskState
    waiting: bool = Field(description="True while it is pending or queued.")
    unschedulable: bool = Field(
        description="No live worker could ever take it: none serves its queue, or none of "
        "those has what it needs. It waits until such a worker registers."
    )
    reasons: list[WaitReason] = Field(description="Most immediate first; never empty.")


AHEAD_CAP = 100_000
"""Tasks ahead are counted no further: the answer stays quick on any queue."""


@dataclass(frozen=True, slots=True)
class Dependency:
    id: str
    name: str | None
    state: TaskState


@dataclass(frozen=True, slots=True)
class Seen:
    """What the engine read for one task's answer."""

    task: Task
    now: datetime
    dependencies: Sequence[Dependency]
    """Its dependencies that have not succeeded."""
    pauses: Sequence[Pause]
    workers: Sequence[Worker]
    running: Mapping[str, int]
    """Running tasks by worker id."""
    ahead: int
    """Queued tasks of its queue before it in lease order (up to AHEAD_CAP)."""
    limits: Sequence[WaitReason] = ()
    """Its full limits, as reasons (engine/why.py)."""


def explain(seen: Seen) -> list[WaitReason]:
    """Every reason the task is not running now, most immediate first."""
    task = seen.task
    if task.state is TaskState.RUNNING:
        worker = next((w for w in seen.workers if w.id == task.worker_id), None)
        name = worker.name if worker else task.worker_id or "?"
        return [
            WaitReason(
                code=WaitCode.RUNNING,
                message=f"it is running on worker {name}",
                workers={task.worker_id: []} if task.worker_id else {},
            )
        ]
    if task.state.is_terminal:
        return [
            WaitReason(
                code=WaitCode.FINISHED,
                message=f"it has ended {task.state.value}; retry it to run it again",
            )
        ]
    if task.state is TaskState.PENDING:
        return [*_pending(seen), *_workers(seen, lease_next=False)]
    held = [*_paused(seen), *seen.limits]
    # Held back, it is not a lease away from starting: only what it lacks for later is said.
    return [*held, *_workers(seen, lease_next=not held)]


def unschedulable(reasons: Sequence[WaitReason]) -> bool:
    """Whether no live worker could ever take the task, as its reasons say."""
    return any(r.code in (WaitCode.NO_WORKER, WaitCode.NO_CAPABLE_WORKER) for r in reasons)


def could_take(
    queue: str,
    handler: str,
    require: Mapping[str, str],
    resources: Mapping[str, float],
    workers: Sequence[Worker],
) -> bool:
    """Whether some live worker serves `queue` and could run such a task, idle."""
    return any(
        not _lacks(w, handler, require, resources) for w in _live(workers) if queue in w.queues
    )


def _pending(seen: Seen) -> list[WaitReason]:
    task, now = seen.task, seen.now
    reasons: list[WaitReason] = []
    if seen.dependencies:
        shown = ", ".join(
            f"{d.name or d.id} ({d.state.value})" for d in list(seen.dependencies)[:5]
        )
        more = len(seen.dependencies) - 5
        reasons.append(
            WaitReason(
                code=WaitCode.DEPENDENCIES,
                message=f"it waits for {len(seen.dependencies)} "
                f"dependenc{'y' if len(seen.dependencies) == 1 else 'ies'} to succeed: {shown}"
                + (f" and {more} more" if more > 0 else ""),
                tasks=[d.id for d in seen.dependencies],
            )
        )
    if task.not_before is not None and task.not_before > now:
        backoff = task.retries_used > 0
        reasons.append(
            WaitReason(
                code=WaitCode.BACKOFF if backoff else WaitCode.START_TIME,
                message=(
                    f"its retry waits out its backoff until {task.not_before.isoformat()}"
                    if backoff
                    else f"it starts no earlier than {task.not_before.isoformat()}"
                ),
                until=task.not_before,
            )
        )
    if not reasons:
        reasons.append(
            WaitReason(
                code=WaitCode.DUE,
                message="nothing is left to wait for: the timers queue it at their next pass",
            )
        )
    return reasons


def _paused(seen: Seen) -> list[WaitReason]:
    for pause in seen.pauses:
        if not pause.holds(seen.now):
            continue
        if pause.scope is PauseScope.ALL or (
            pause.scope is PauseScope.QUEUE and pause.name == seen.task.queue
        ):
            what = "the whole cluster" if pause.scope is PauseScope.ALL else "its queue"
            ends = f" until {pause.until.isoformat()}" if pause.until else " until resumed"
            return [
                WaitReason(
                    code=WaitCode.PAUSED,
                    message=f"{what} is paused{ends}",
                    pause="*" if pause.scope is PauseScope.ALL else pause.name,
                    until=pause.until,
                )
            ]
    return []


def _workers(seen: Seen, *, lease_next: bool) -> list[WaitReason]:
    task = seen.task
    serving = [w for w in _live(seen.workers) if task.queue in w.queues]
    if not serving:
        draining = sum(
            1 for w in seen.workers if w.state is WorkerState.DRAINING and task.queue in w.queues
        )
        note = f" ({draining} draining)" if draining else ""
        return [
            WaitReason(
                code=WaitCode.NO_WORKER,
                message=f"no live worker serves its queue {task.queue!r}{note}",
            )
        ]
    lacking = {w.id: _lacks(w, task.handler, task.require, task.resources) for w in serving}
    able = [w for w in serving if not lacking[w.id]]
    if not able:
        shown = "; ".join(f"{w.name} lacks {', '.join(lacking[w.id])}" for w in serving[:5])
        more = f"; and {len(serving) - 5} more" if len(serving) > 5 else ""
        return [
            WaitReason(
                code=WaitCode.NO_CAPABLE_WORKER,
                message=f"no live worker of queue {task.queue!r} can run it: {shown}{more}",
                workers=lacking,
            )
        ]
    if not lease_next:
        return []
    busy = sum(1 for w in able if seen.running.get(w.id, 0) >= w.concurrency)
    if busy == len(able):
        return [
            WaitReason(
                code=WaitCode.WORKERS_BUSY,
                message=f"every worker that can run it is busy ({busy}); "
                f"{_ahead(seen.ahead)} come before it",
                busy=busy,
                ahead=seen.ahead,
            )
        ]
    return [
        WaitReason(
            code=WaitCode.READY,
            message=f"{len(able) - busy} worker(s) that can run it have a free slot: it starts "
            f"at their next lease, after the {_ahead(seen.ahead)} before it",
            busy=busy,
            ahead=seen.ahead,
        )
    ]


def _live(workers: Sequence[Worker]) -> list[Worker]:
    return [w for w in workers if w.state is WorkerState.ALIVE]


def _lacks(
    worker: Worker, handler: str, require: Mapping[str, str], resources: Mapping[str, float]
) -> list[str]:
    return unmet(handler, require, resources, worker.capabilities, worker.labels, worker.resources)


def _ahead(count: int) -> str:
    shown = f"{count:,}+" if count >= AHEAD_CAP else f"{count:,}"
    return f"{shown} queued task{'' if count == 1 else 's'}"
