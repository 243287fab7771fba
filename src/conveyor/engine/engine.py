"""The engine: the only writer of task state. Every rule is applied here, through a Store."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from conveyor.clock import Clock, SystemClock
from conveyor.core.batch import plan_batch
from conveyor.core.models import Assignment, Attempt, Task, TaskDetail, Worker, WorkerState
from conveyor.core.schedules import Schedule, ScheduleSpec
from conveyor.core.scheduling import holds_lease, ready_state
from conveyor.core.spec import TaskSpec
from conveyor.core.states import (
    CANCELLABLE_STATES,
    DELETABLE_STATES,
    RETRYABLE_STATES,
    UNSUCCESSFUL_STATES,
    Outcome,
    Reason,
    TaskState,
)
from conveyor.core.transitions import move
from conveyor.core.types import JSON, TaskId, WorkerId
from conveyor.engine.events import Changes, Events
from conveyor.engine.finishing import Ending, end_attempts, fail_dependents
from conveyor.engine.leasing import grant_leases, promote_due
from conveyor.engine.reports import HeartbeatReply, Report, ReportAck
from conveyor.engine.schedules import fire_due, new_schedule
from conveyor.engine.settings import EngineSettings
from conveyor.engine.submitting import store_batch
from conveyor.errors import (
    ConflictError,
    DuplicateKeyError,
    InvalidSpecError,
    NotFoundError,
    StaleTokenError,
)
from conveyor.ids import new_id
from conveyor.store.base import StateCount, Store, StoreTx, TaskFilter

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        settings: EngineSettings | None = None,
        rng: random.Random | None = None,
        id_factory: Callable[[], str] = new_id,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.settings = settings or EngineSettings()
        self.events = Events()
        self._rng = rng or random.Random()
        self._new_id = id_factory

    # ---- submitting -------------------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> Task:
        return self.submit_batch([spec])[0]

    def submit_batch(self, specs: Sequence[TaskSpec]) -> list[Task]:
        """Store every spec or none; `depends_on` and `$result` may name other specs of the batch."""
        if not specs:
            return []
        planned = plan_batch(specs, [self._new_id() for _ in specs])
        for attempt in (1, 2):
            changes = Changes()
            now = self.clock.now()
            try:
                with self.store.transaction() as tx:
                    tasks = store_batch(tx, planned, now, changes)
                break
            except DuplicateKeyError:
                # Another server stored one of these keys between our look-up and our insert;
                # the second attempt finds it and returns it, as a key promises.
                if attempt == 2:
                    raise
        self.events.publish(changes)
        return tasks

    # ---- workers ----------------------------------------------------------------------------

    def register_worker(
        self,
        *,
        name: str,
        host: str,
        pid: int,
        concurrency: int,
        queues: Sequence[str] = ("default",),
        resources: Mapping[str, float] | None = None,
    ) -> Worker:
        if concurrency < 1:
            raise InvalidSpecError("must be at least 1", field="concurrency")
        if not queues:
            raise InvalidSpecError("name at least one queue", field="queues")
        now = self.clock.now()
        worker = Worker(
            id=self._new_id(),
            name=name,
            host=host,
            pid=pid,
            concurrency=concurrency,
            queues=list(dict.fromkeys(queues)),
            resources=dict(resources or {}),
            state=WorkerState.ALIVE,
            registered_at=now,
            last_seen_at=now,
        )
        with self.store.transaction() as tx:
            tx.insert_worker(worker)
        log.info("worker registered", extra={"worker_id": worker.id, "worker_name": name})
        return worker

    def heartbeat(
        self,
        worker_id: WorkerId,
        held: Sequence[tuple[TaskId, int]] = (),
        metrics: Mapping[str, JSON] | None = None,
    ) -> HeartbeatReply:
        """Record that the worker lives and extend the leases it still holds.

        Leases it no longer holds (the task was cancelled, or expired and went elsewhere) come back
        in `stop`: the worker must kill those executions, and its reports for them will be refused.
        """
        now = self.clock.now()
        expires = now + timedelta(seconds=self.settings.lease_s)
        with self.store.transaction() as tx:
            worker = self._live_worker(tx, worker_id)
            worker.last_seen_at = now
            if metrics is not None:
                worker.metrics = dict(metrics)
            tx.update_worker(worker)
            tasks = tx.get_tasks([task_id for task_id, _ in held], for_update=True)
            extended: list[Task] = []
            stop: list[TaskId] = []
            for task_id, token in held:
                task = tasks.get(task_id)
                if task is not None and holds_lease(task, worker_id, token):
                    task.lease_expires_at = expires
                    extended.append(task)
                else:
                    stop.append(task_id)
            tx.update_tasks(extended)
        return HeartbeatReply(
            extended=[t.id for t in extended],
            stop=stop,
            drain=worker.state is WorkerState.DRAINING,
        )

    def deregister_worker(self, worker_id: WorkerId) -> Worker:
        """Remove a worker; the tasks it was running go back to the queue without spending a retry."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            worker = tx.get_worker(worker_id, for_update=True)
            if worker is None:
                raise NotFoundError(f"no worker {worker_id}")
            self._release_worker(tx, worker, WorkerState.GONE, "worker deregistered", now, changes)
        self.events.publish(changes)
        return worker

    def expire_workers(self) -> int:
        """Declare workers dead after missed heartbeats and re-queue their tasks. Safe to run twice."""
        changes = Changes()
        now = self.clock.now()
        cutoff = now - timedelta(seconds=self.settings.worker_dead_after_s)
        with self.store.transaction() as tx:
            dead = tx.stale_workers(cutoff, self.settings.timer_batch)
            for worker in dead:
                self._release_worker(
                    tx, worker, WorkerState.DEAD, "worker stopped heartbeating", now, changes
                )
        self.events.publish(changes)
        if dead:
            log.warning("workers declared dead", extra={"worker_ids": [w.id for w in dead]})
        return len(dead)

    def _release_worker(
        self,
        tx: StoreTx,
        worker: Worker,
        state: WorkerState,
        why: str,
        now: datetime,
        changes: Changes,
    ) -> None:
        worker.state = state
        tx.update_worker(worker)
        running = tx.running_on_worker(worker.id)
        self._end(tx, [Ending(t, Outcome.LOST, error=why) for t in running], now, changes)

    def _live_worker(self, tx: StoreTx, worker_id: WorkerId) -> Worker:
        worker = tx.get_worker(worker_id, for_update=True)
        if worker is None:
            raise NotFoundError(f"no worker {worker_id}; register first")
        if worker.state in (WorkerState.DEAD, WorkerState.GONE):
            raise ConflictError(f"worker {worker_id} is {worker.state.value}; register again")
        return worker

    # ---- leasing and reporting --------------------------------------------------------------

    def lease(
        self,
        worker_id: WorkerId,
        max_tasks: int,
        *,
        queues: Sequence[str] | None = None,
        free: Mapping[str, float] | None = None,
    ) -> list[Assignment]:
        """Lease up to `max_tasks` ready tasks, highest priority first, that fit `free` resources.

        `free=None` takes the worker's advertised resources.
        """
        if max_tasks < 1:
            return []
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            worker = self._live_worker(tx, worker_id)
            if worker.state is WorkerState.DRAINING:
                return []
            promote_due(tx, now, changes)
            assignments, unstartable = grant_leases(
                tx,
                worker,
                min(max_tasks, self.settings.max_lease_batch),
                list(queues) if queues else worker.queues,
                worker.resources if free is None else free,
                self.settings.lease_s,
                now,
                changes,
            )
            self._end(tx, unstartable, now, changes)
        self.events.publish(changes)
        return assignments

    def report(self, worker_id: WorkerId, reports: Sequence[Report]) -> list[ReportAck]:
        """Record finished attempts. A report whose token is not the task's current lease is
        refused and changes nothing: the task was re-leased, cancelled, or already recorded."""
        changes = Changes()
        now = self.clock.now()
        acks: list[ReportAck] = []
        with self.store.transaction() as tx:
            tasks = tx.get_tasks([r.task_id for r in reports], for_update=True)
            endings: list[Ending] = []
            ended: set[TaskId] = set()
            for r in reports:
                task = tasks.get(r.task_id)
                if task is None:
                    acks.append(ReportAck(r.task_id, False, None, "no such task"))
                elif task.id in ended:
                    # The same lease twice in one batch: the first report ends it, as if the
                    # second had come in a later call; a terminal result is written once.
                    detail = f"token {r.token} of task {task.id} was already reported"
                    acks.append(ReportAck(r.task_id, False, task.state, detail))
                elif not holds_lease(task, worker_id, r.token):
                    acks.append(
                        ReportAck(r.task_id, False, task.state, _stale_detail(task, r.token))
                    )
                elif r.outcome in (Outcome.LOST,):
                    acks.append(
                        ReportAck(r.task_id, False, task.state, "workers cannot report lost")
                    )
                else:
                    endings.append(
                        Ending(
                            task,
                            r.outcome,
                            r.result,
                            r.error,
                            r.traceback,
                            r.stdout_tail,
                            r.stderr_tail,
                        )
                    )
                    ended.add(task.id)
                    acks.append(ReportAck(r.task_id, True, None))
            self._end(tx, endings, now, changes)
        final_state = {e.task.id: e.task.state for e in endings}
        self.events.publish(changes)
        return [
            ReportAck(a.task_id, a.accepted, final_state.get(a.task_id, a.state), a.detail)
            for a in acks
        ]

    def report_one(self, worker_id: WorkerId, report: Report) -> TaskState:
        """Like report(), for one attempt; a stale token raises StaleTokenError."""
        ack = self.report(worker_id, [report])[0]
        if ack.state is None:
            raise NotFoundError(f"no task {report.task_id}")
        if not ack.accepted:
            raise StaleTokenError(ack.detail)
        return ack.state

    def expire_leases(self) -> int:
        """Re-queue running tasks whose lease expired (their worker went quiet). Safe to run twice."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            expired = tx.expired_leases(now, self.settings.timer_batch)
            self._end(
                tx, [Ending(t, Outcome.LOST, error="lease expired") for t in expired], now, changes
            )
        self.events.publish(changes)
        return len(expired)

    def release_due(self) -> int:
        """Queue pending tasks whose start time or backoff has passed (lease() does this too)."""
        changes = Changes()
        with self.store.transaction() as tx:
            count = promote_due(tx, self.clock.now(), changes)
        self.events.publish(changes)
        return count

    # ---- schedules --------------------------------------------------------------------------

    def add_schedule(self, spec: ScheduleSpec, *, replace: bool = False) -> Schedule:
        """Store a cron schedule; its first firing is the next time its cron expression names."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            if not replace and tx.get_schedule(spec.name, for_update=True) is not None:
                raise ConflictError(
                    f"a schedule named {spec.name!r} exists; remove it or replace it"
                )
            schedule = new_schedule(spec, now)
            tx.put_schedule(schedule)
        return schedule

    def schedules(self) -> list[Schedule]:
        with self.store.transaction(write=False) as tx:
            return tx.list_schedules()

    def schedule(self, name: str) -> Schedule:
        with self.store.transaction(write=False) as tx:
            found = tx.get_schedule(name)
        if found is None:
            raise NotFoundError(f"no schedule {name!r}")
        return found

    def remove_schedule(self, name: str) -> None:
        with self.store.transaction() as tx:
            if not tx.delete_schedule(name):
                raise NotFoundError(f"no schedule {name!r}")

    def fire_schedules(self) -> int:
        """Submit the tasks of due schedules (a timer). Safe to run on several servers at once."""
        changes = Changes()
        with self.store.transaction() as tx:
            count = fire_due(tx, self.clock.now(), self.settings.timer_batch, self._new_id, changes)
        self.events.publish(changes)
        return count

    def tick(self) -> None:
        """Run every timer once: schedules, due tasks, expired leases, dead workers, housekeeping."""
        self.fire_schedules()
        self.release_due()
        self.expire_leases()
        self.expire_workers()
        self.maintain()

    def maintain(self) -> int:
        """Store housekeeping, and retention: delete tasks finished more than retention_s ago
        (never one that a live task still waits on). Returns how many tasks were deleted."""
        self.store.maintain()
        if self.settings.retention_s is None:
            return 0
        cutoff = self.clock.now() - timedelta(seconds=self.settings.retention_s)
        with self.store.transaction() as tx:
            old = tx.finished_before(cutoff, self.settings.timer_batch)
            edges = tx.dependents([t.id for t in old])
            children = tx.get_tasks({c for cs in edges.values() for c in cs})
            needed = {
                p
                for p, cs in edges.items()
                if any(not children[c].state.is_terminal for c in cs if c in children)
            }
            doomed = [t.id for t in old if t.id not in needed]
            tx.delete_tasks(doomed)
            tx.delete_workers_gone_before(cutoff)
        if doomed:
            log.info("retention deleted finished tasks", extra={"count": len(doomed)})
        return len(doomed)

    def _end(self, tx: StoreTx, endings: Sequence[Ending], now: datetime, changes: Changes) -> None:
        if endings:
            end_attempts(
                tx,
                endings,
                now,
                delivery_limit=self.settings.delivery_limit,
                random_fraction=self._rng.random,
                changes=changes,
            )

    # ---- user actions -----------------------------------------------------------------------

    def cancel(self, task_id: TaskId) -> Task:
        """Cancel a pending, queued or running task; a running one is stopped at its next heartbeat."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in CANCELLABLE_STATES:
                raise ConflictError(
                    f"task {task_id} is {task.state.value}; only pending, queued or running tasks can be cancelled"
                )
            if task.state is TaskState.RUNNING:
                self._end(
                    tx, [Ending(task, Outcome.CANCELLED, error="cancelled by user")], now, changes
                )
            else:
                move(task, TaskState.CANCELLED, now)
                task.reason = Reason.CANCELLED_BY_USER
                task.finished_at = now
                tx.update_tasks([task])
                changes.end([task])
                fail_dependents(tx, [task], now, changes)
        self.events.publish(changes)
        return task

    def retry(self, task_id: TaskId) -> Task:
        """Run a failed, timed-out or cancelled task again, with its retries restored; the tasks
        that failed only because of it wait for it again."""
        changes = Changes()
        now = self.clock.now()
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in RETRYABLE_STATES:
                raise ConflictError(
                    f"task {task_id} is {task.state.value}; only failed, timed-out or cancelled tasks can be retried"
                )
            self._reset(tx, [task], now, changes, check_parents=True)
        self.events.publish(changes)
        return task

    def _reset(
        self,
        tx: StoreTx,
        tasks: list[Task],
        now: datetime,
        changes: Changes,
        *,
        check_parents: bool,
    ) -> None:
        while tasks:
            parents = tx.get_tasks({d for t in tasks for d in t.depends_on})
            revived: list[Task] = []
            for task in tasks:
                blocked = _blocked_by(task, parents)
                if blocked is not None:
                    if check_parents:
                        raise ConflictError(blocked)
                    # Another dependency is still unsuccessful: the descendant stays failed
                    # (retrying that dependency revives it), rather than wait forever.
                    continue
                task.deps_left = sum(
                    1 for d in task.depends_on if parents[d].state is not TaskState.SUCCEEDED
                )
                move(task, ready_state(task.deps_left, None, now), now)
                task.not_before = None
                task.retries_used = task.deliveries = 0
                task.reason = task.error = task.result = task.finished_at = None
                if task.state is TaskState.QUEUED:
                    changes.ready_queues.add(task.queue)
                revived.append(task)
            tx.update_tasks(revived)
            edges = tx.dependents([t.id for t in revived])
            children = tx.get_tasks({c for cs in edges.values() for c in cs}, for_update=True)
            tasks = [
                c
                for c in children.values()
                if c.state is TaskState.FAILED and c.reason is Reason.DEPENDENCY_FAILED
            ]
            check_parents = False

    def delete(self, task_id: TaskId) -> None:
        """Remove a task that is not running, with its attempts. Refused while tasks wait on it."""
        with self.store.transaction() as tx:
            task = self._task_for_update(tx, task_id)
            if task.state not in DELETABLE_STATES:
                raise ConflictError(f"task {task_id} is running; cancel it first")
            waiting = tx.get_tasks(tx.dependents([task_id]).get(task_id, []))
            live = [t for t in waiting.values() if not t.state.is_terminal]
            if live:
                raise ConflictError(
                    f"{len(live)} task(s) wait on task {task_id} (e.g. {live[0].name or live[0].id}); "
                    "cancel or delete them first"
                )
            tx.delete_tasks([task_id])

    def _task_for_update(self, tx: StoreTx, task_id: TaskId) -> Task:
        task = tx.get_tasks([task_id], for_update=True).get(task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    # ---- reads ------------------------------------------------------------------------------

    def get(self, task_id: TaskId) -> Task:
        with self.store.transaction(write=False) as tx:
            task = tx.get_tasks([task_id]).get(task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    def get_many(self, task_ids: Sequence[TaskId]) -> dict[TaskId, Task]:
        with self.store.transaction(write=False) as tx:
            return tx.get_tasks(task_ids)

    def detail(self, task_id: TaskId) -> TaskDetail:
        """The task, its attempts and its dependents, from one consistent read."""
        with self.store.transaction(write=False) as tx:
            task = tx.get_tasks([task_id]).get(task_id)
            if task is None:
                raise NotFoundError(f"no task {task_id}")
            dependents = tx.dependents([task_id]).get(task_id, [])
            return TaskDetail(task, tx.get_attempts(task_id), dependents)

    def attempts(self, task_id: TaskId) -> list[Attempt]:
        with self.store.transaction(write=False) as tx:
            return tx.get_attempts(task_id)

    def list_tasks(
        self, where: TaskFilter | None = None, *, after_seq: int | None = None, limit: int = 100
    ) -> list[Task]:
        with self.store.transaction(write=False) as tx:
            return tx.list_tasks(where or TaskFilter(), after_seq, max(1, min(limit, 1000)))

    def counts(self) -> list[StateCount]:
        with self.store.transaction(write=False) as tx:
            return tx.count_tasks()

    def workers(self) -> list[Worker]:
        with self.store.transaction(write=False) as tx:
            return tx.list_workers()

    def worker(self, worker_id: WorkerId) -> Worker:
        with self.store.transaction(write=False) as tx:
            worker = tx.get_worker(worker_id)
        if worker is None:
            raise NotFoundError(f"no worker {worker_id}")
        return worker

    def next_due_at(self) -> datetime | None:
        """When the next pending task's start time or backoff ends, if any is waiting on time."""
        with self.store.transaction(write=False) as tx:
            return tx.next_due()


def _blocked_by(task: Task, parents: Mapping[TaskId, Task]) -> str | None:
    """Why `task` cannot run again yet: a dependency that is unsuccessful or was deleted."""
    for dep in task.depends_on:
        parent = parents.get(dep)
        if parent is None:
            return f"dependency {dep} was deleted; task {task.id} cannot run again"
        if parent.state in UNSUCCESSFUL_STATES:
            return f"dependency {parent.name or parent.id} is {parent.state.value}; retry it first"
    return None


def _stale_detail(task: Task, token: int) -> str:
    if task.state is TaskState.RUNNING and task.attempts != token:
        return f"stale token {token}: task {task.id} was leased again (token {task.attempts})"
    if task.state is TaskState.RUNNING:
        return f"task {task.id} is leased to another worker"
    return f"stale token {token}: task {task.id} is {task.state.value}"
