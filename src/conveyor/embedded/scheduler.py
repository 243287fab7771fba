"""The embedded Scheduler: engine, SQLite store and a process pool in one process, no network.

State lives in the database file. Kill the process at any moment, start it again on the same
file, and the jobs carry on: jobs that had succeeded stay succeeded, jobs that were running when
it died are leased again (without spending their retries), and jobs added again by name are
recognised instead of duplicated.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.clock import Clock, SystemClock
from conveyor.core.models import Assignment, Task, WorkerState
from conveyor.core.refs import find_refs, rename_refs
from conveyor.core.spec import TaskSpec
from conveyor.core.states import LIVE_STATES, TaskState
from conveyor.core.types import TaskId
from conveyor.embedded.hostinfo import hostname, pid_alive
from conveyor.engine import Engine, EngineSettings, Report
from conveyor.executor import Execution, ExecutionResult, ProcessPool
from conveyor.executor.resources import ResourceLedger
from conveyor.handlers import HandlerPolicy
from conveyor.store.base import Durability, StateCount, TaskFilter
from conveyor.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[["Progress"], None]


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts by state, for a progress display."""

    counts: Mapping[TaskState, int]
    elapsed_s: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state.is_terminal)


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
        self._store = SQLiteStore(db, durability=durability, accept_wal_loss=accept_wal_loss)
        self.engine = Engine(self._store, clock=clock or SystemClock(), settings=settings)
        self._poll_interval_s = poll_interval_s
        self._stopping = False

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
        """Ask a running loop to stop leasing and return once its running jobs end."""
        self._stopping = True

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
        """Run until no job is pending, queued or running (or `timeout_s` passes)."""
        self._stopping = False
        self._recover_orphans()
        worker = self.engine.register_worker(
            name=f"embedded-{os.getpid()}",
            host=hostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            queues=self._queues() or ["default"],
            resources=self.resources,
        )
        loop = _Loop(self, worker.id, on_progress, timeout_s)
        try:
            return loop.run()
        finally:
            self.engine.deregister_worker(worker.id)

    def _queues(self) -> list[str]:
        return sorted({c.queue for c in self.engine.counts() if c.state in LIVE_STATES})

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
                self.engine.deregister_worker(worker.id)


class _Loop:
    """One run of the lease → execute → report cycle."""

    def __init__(
        self,
        scheduler: Scheduler,
        worker_id: str,
        on_progress: ProgressCallback | None,
        timeout_s: float | None,
    ) -> None:
        self.s = scheduler
        self.engine = scheduler.engine
        self.worker_id = worker_id
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.deadline = None if timeout_s is None else self.started + timeout_s
        self.ledger = ResourceLedger(scheduler.resources)

    def run(self) -> RunSummary:
        settings = self.engine.settings
        next_heartbeat = time.monotonic() + settings.heartbeat_interval_s
        with ProcessPool(self.s.concurrency, self.s.policy, clock=self.engine.clock) as pool:
            unsubscribe = self.engine.events.subscribe(lambda _changes: pool.wake())
            try:
                while True:
                    leased = self._lease(pool)
                    counts = self._progress()
                    live = sum(n for state, n in counts.items() if state in LIVE_STATES)
                    if not pool.running and not leased:
                        if live == 0 or self.s._stopping or self._timed_out():
                            break
                        if not self._waiting_on_time():
                            return self._summary(counts, stuck=self._stuck())
                    if self._timed_out() and not pool.running:
                        break
                    wait_s = 0.0 if leased else self._wait_s(next_heartbeat)
                    self._report(pool.wait(wait_s))
                    if time.monotonic() >= next_heartbeat:
                        self._heartbeat(pool)
                        next_heartbeat = time.monotonic() + settings.heartbeat_interval_s
            finally:
                unsubscribe()
        return self._summary(self._progress())

    def _lease(self, pool: ProcessPool) -> list[Assignment]:
        if self.s._stopping or self._timed_out() or pool.free_slots == 0:
            return []
        queues = self.s._queues()
        if not queues:
            return []
        assignments = self.engine.lease(
            self.worker_id, pool.free_slots, queues=queues, free=self.ledger.free()
        )
        for a in assignments:
            self.ledger.hold(a.task_id, a.resources)
            pool.start(Execution(a.task_id, a.token, a.handler, a.args, a.kwargs, a.timeout_s))
        return assignments

    def _report(self, results: Sequence[ExecutionResult]) -> None:
        if not results:
            return
        for r in results:
            self.ledger.release(r.task_id)
        acks = self.engine.report(
            self.worker_id,
            [
                Report(
                    r.task_id,
                    r.token,
                    r.outcome,
                    r.result,
                    r.error,
                    r.traceback,
                    r.stdout_tail,
                    r.stderr_tail,
                )
                for r in results
            ],
        )
        for ack in acks:
            if not ack.accepted:
                log.info("report refused", extra={"task_id": ack.task_id, "detail": ack.detail})

    def _heartbeat(self, pool: ProcessPool) -> None:
        reply = self.engine.heartbeat(self.worker_id, pool.running)
        for task_id in reply.stop:
            pool.cancel(task_id)
        self.engine.tick()

    def _wait_s(self, next_heartbeat: float) -> float:
        """Sleep until a job ends, the next heartbeat, or the next start time, whichever is first."""
        wait_s = min(self.s._poll_interval_s, next_heartbeat - time.monotonic())
        due = self.engine.next_due_at()
        if due is not None:
            wait_s = min(wait_s, (due - self.engine.clock.now()).total_seconds())
        return max(0.0, wait_s)

    def _waiting_on_time(self) -> bool:
        """Pending jobs whose start time or backoff is ahead: keep looping until they are due."""
        return self.engine.next_due_at() is not None

    def _stuck(self) -> list[Task]:
        return self.engine.list_tasks(TaskFilter(states=(TaskState.QUEUED,)), limit=1000)

    def _timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _progress(self) -> dict[TaskState, int]:
        counts = _by_state(self.engine.counts())
        if self.on_progress is not None:
            self.on_progress(Progress(counts, time.monotonic() - self.started))
        return counts

    def _summary(self, counts: dict[TaskState, int], stuck: list[Task] | None = None) -> RunSummary:
        return RunSummary(counts, time.monotonic() - self.started, stuck or [])


def _named_upstream(job: TaskSpec) -> set[str]:
    return {*job.depends_on, *find_refs(job.args), *find_refs(job.kwargs)}


def _by_state(counts: Iterable[StateCount]) -> dict[TaskState, int]:
    totals: dict[TaskState, int] = {}
    for c in counts:
        totals[c.state] = totals.get(c.state, 0) + c.count
    return totals
