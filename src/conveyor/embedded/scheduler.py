"""The embedded Scheduler: the engine, a SQLite store and the worker program in one process, no
network.

Jobs are added, read and cancelled through the engine. run_until_complete() runs the real worker
(conveyor.worker) over an in-process server (conveyor.server.local), so that embedded jobs are
leased, heartbeated, fenced and reported by the very code that serves remote workers
(conveyor.embedded.run).

State lives in the database file. Kill the process at any moment, start it again on the same
file, and the jobs carry on: jobs that had succeeded stay succeeded, jobs that were running when
it died are leased again (without spending their retries), and jobs added again by name are
recognised instead of duplicated.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.clock import Clock, SystemClock
from conveyor.core.limiting import Limit, LimitUse
from conveyor.core.models import Task, WorkerState
from conveyor.core.refs import find_refs, rename_refs
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.core.types import TaskId
from conveyor.core.validation import validated
from conveyor.embedded.hostinfo import hostname, pid_alive
from conveyor.embedded.run import EmbeddedRun, ProgressCallback, Setup
from conveyor.engine import Engine, EngineSettings
from conveyor.handlers import HandlerPolicy
from conveyor.store.base import Durability, TaskFilter
from conveyor.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

EMBEDDED_SETTINGS = EngineSettings(lease_s=10.0, heartbeat_interval_s=0.5, worker_dead_after_s=5.0)
"""Timings for a worker in the scheduler's own process: a heartbeat every half second carries a
cancel to the running job's process within that, and costs next to nothing without a network.
(A worker that dies here dies with the scheduler, and the next run hands its jobs back at once:
see Scheduler._recover_orphans.)"""


@dataclass(slots=True)
class RunSummary:
    counts: dict[TaskState, int]
    elapsed_s: float
    stuck: list[Task] = field(default_factory=list)
    """Queued tasks nothing here can run (their resources exceed this scheduler's)."""

    @property
    def ok(self) -> bool:
        unsuccessful = sum(
            n for s, n in self.counts.items() if s.is_terminal and s is not TaskState.SUCCEEDED
        )
        return unsuccessful == 0 and not self.stuck


class Scheduler:
    """Run jobs in child processes of this process, with state in a SQLite file.

    ```python
    scheduler = Scheduler(db="jobs.db", concurrency=10)
    scheduler.add(Job("sha256", name="digest", args=["hello"], timeout_s=5))
    scheduler.run_until_complete()
    ```
    """

    def __init__(
        self,
        db: str | Path = "conveyor.db",
        *,
        concurrency: int = 10,
        policy: HandlerPolicy | None = None,
        resources: Mapping[str, float] | None = None,
        clock: Clock | None = None,
        settings: EngineSettings | None = None,
        poll_interval_s: float = 0.5,
        durability: Durability = Durability.NORMAL,
        accept_wal_loss: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        # The caller of an embedded scheduler runs its own code: importing its modules is no
        # wider a door than the script itself. Shell stays off unless asked for, and so do the
        # http handler's non-public addresses (HandlerPolicy.allow_networks): job files often
        # take their URLs from variables.
        self.policy = policy or HandlerPolicy(allow_modules=("*",))
        self.resources = dict(resources or {})
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self._store = SQLiteStore(db, durability=durability, accept_wal_loss=accept_wal_loss)
        self.engine = Engine(
            self._store, clock=clock or SystemClock(), settings=settings or EMBEDDED_SETTINGS
        )
        self._poll_interval_s = poll_interval_s
        self._stop_requested = threading.Event()
        self._run: EmbeddedRun | None = None

    # ---- adding and managing jobs -----------------------------------------------------------

    def add(self, job: TaskSpec) -> TaskId:
        """Add one job; returns its task id. A named job added again returns the first one's id."""
        return self.add_all([job])[0]

    def add_all(self, jobs: Sequence[TaskSpec]) -> list[TaskId]:
        """Add jobs atomically; `depends_on` and `$result` may name jobs of this call or earlier ones."""
        own = {job.name for job in jobs}
        wanted = {name for job in jobs for name in _named_upstream(job)} - own
        known = self._ids_by_name(wanted)
        specs = [self._keyed(job, known) for job in jobs]
        return [task.id for task in self.engine.submit_batch(specs)]

    def set_limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per_s: float = 1.0,
    ) -> LimitUse:
        """Store limit `name` (as Client.set_limit does): jobs take it with `limits=[name]`."""
        limit = validated(
            Limit, {"name": name, "concurrency": concurrency, "rate": rate, "per_s": per_s}
        )
        return self.engine.set_limit(limit)

    def _keyed(self, job: TaskSpec, known: Mapping[str, TaskId]) -> TaskSpec:
        """Give a named job its idempotency key, and point names of earlier jobs at their ids."""
        update: dict[str, object] = {}
        if job.name is not None and job.key is None:
            update["key"] = f"job:{job.name}"
        if known.keys() & _named_upstream(job):
            update["depends_on"] = [known.get(dep, dep) for dep in job.depends_on]
            update["args"] = rename_refs(job.args, known)
            update["kwargs"] = rename_refs(job.kwargs, known)
        return job.model_copy(update=update) if update else job

    def _ids_by_name(self, names: Iterable[str]) -> dict[str, TaskId]:
        found: dict[str, TaskId] = {}
        for name in names:
            matches = self.engine.list_tasks(TaskFilter(name=name), limit=1)
            if matches:
                found[name] = matches[0].id
        return found

    def status(self) -> dict[str, int]:
        """Number of jobs in each state."""
        totals: dict[str, int] = {}
        for c in self.engine.counts():
            totals[c.state.value] = totals.get(c.state.value, 0) + c.count
        return totals

    def tasks(self, *, state: TaskState | None = None, limit: int = 1000) -> list[Task]:
        where = TaskFilter(states=(state,) if state else ())
        return self.engine.list_tasks(where, limit=limit)

    def get(self, task_id: TaskId) -> Task:
        return self.engine.get(task_id)

    def cancel(self, task_id: TaskId) -> Task:
        """Cancel a job; if it is running here, its child process is killed."""
        return self.engine.cancel(task_id)

    def remove(self, task_id: TaskId) -> None:
        """Delete a job that is not running."""
        self.engine.delete(task_id)

    def stop(self) -> None:
        """Ask a run to stop leasing (any thread): it returns once its running jobs end, or
        after the worker's grace period (30 s), when the jobs still running are killed and
        handed back, to run again next time without spending a retry."""
        self._stop_requested.set()
        run = self._run
        if run is not None:
            run.wake()

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- running ----------------------------------------------------------------------------

    def run(self, on_progress: ProgressCallback | None = None) -> RunSummary:
        return self.run_until_complete(on_progress)

    def run_until_complete(
        self, on_progress: ProgressCallback | None = None, *, timeout_s: float | None = None
    ) -> RunSummary:
        """Run until no job is pending, queued or running, or until what is left is stuck, or
        `timeout_s` passes (then as stop()). `on_progress` is called in this thread."""
        self._stop_requested.clear()
        self._recover_orphans()
        setup = Setup(
            engine=self.engine,
            concurrency=self.concurrency,
            policy=self.policy,
            resources=self.resources,
            timer_interval_s=self._poll_interval_s,
        )
        run = self._run = EmbeddedRun(
            setup, on_progress, timeout_s=timeout_s, stop_requested=self._stop_requested
        )
        try:
            counts, stuck = run()
        finally:
            self._run = None
        return RunSummary(counts, run.elapsed_s, stuck)

    def _recover_orphans(self) -> None:
        """Hand back the tasks of earlier embedded runs on this host whose process has died."""
        here = hostname()
        for worker in self.engine.workers():
            if (
                worker.host == here
                and worker.state in (WorkerState.ALIVE, WorkerState.DRAINING)
                and worker.pid != os.getpid()
                and not pid_alive(worker.pid)
            ):
                log.warning(
                    "recovering tasks of a dead process",
                    extra={"worker_id": worker.id, "pid": worker.pid},
                )
                self.engine.deregister_worker(worker.id, stopped=True)


def _named_upstream(job: TaskSpec) -> set[str]:
    return {*job.depends_on, *find_refs(job.args), *find_refs(job.kwargs)}
