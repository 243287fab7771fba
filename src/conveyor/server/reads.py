"""Reads that combine several engine calls into one answer; each runs in a worker thread."""

from __future__ import annotations

from conveyor.core.models import Worker, WorkerState
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId, WorkerId
from conveyor.engine import Engine
from conveyor.errors import NotFoundError
from conveyor.store.base import TaskFilter

PAGE = 1000
LIVE_WORKER_STATES = frozenset({WorkerState.ALIVE, WorkerState.DRAINING})


def running_by_worker(engine: Engine) -> dict[WorkerId, list[TaskId]]:
    """Ids of the running tasks of each worker (as many as all workers' concurrency, at most)."""
    running: dict[WorkerId, list[TaskId]] = {}
    where = TaskFilter(states=[TaskState.RUNNING])
    after: int | None = None
    while True:
        page = engine.list_tasks(where, after_seq=after, limit=PAGE)
        for task in page:
            if task.worker_id is not None:
                running.setdefault(task.worker_id, []).append(task.id)
        if len(page) < PAGE:
            return running
        after = page[-1].seq


def workers_with_running(engine: Engine) -> tuple[list[Worker], dict[WorkerId, list[TaskId]]]:
    """Workers not deregistered, and the tasks each runs."""
    workers = [w for w in engine.workers() if w.state is not WorkerState.GONE]
    return workers, running_by_worker(engine)


def registered_worker(engine: Engine, worker_id: WorkerId) -> Worker:
    """The worker, or NotFoundError if there is none or it was deregistered."""
    worker = engine.worker(worker_id)
    if worker.state is WorkerState.GONE:
        raise NotFoundError(f"worker {worker_id} was deregistered")
    return worker


def deregister(engine: Engine, worker_id: WorkerId, *, stopped: bool) -> None:
    """Deregister a worker; NotFoundError if it is unknown or was deregistered already."""
    registered_worker(engine, worker_id)
    engine.deregister_worker(worker_id, stopped=stopped)


def worker_with_running(engine: Engine, worker_id: WorkerId) -> tuple[Worker, list[TaskId]]:
    worker = registered_worker(engine, worker_id)
    # A dead worker too: it keeps the tasks whose lease has not run out yet.
    return worker, running_by_worker(engine).get(worker_id, [])
