"""Submitting, leasing and reporting: the path every task takes."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from conveyor.core.batch import plan_batch
from conveyor.core.models import Assignment, Task, Worker, WorkerState
from conveyor.core.scheduling import holds_lease
from conveyor.core.spec import TaskSpec
from conveyor.core.states import (
    LEASE_EXPIRED,
    WORKER_DEREGISTERED,
    Outcome,
    TaskState,
)
from conveyor.core.text import clean_text
from conveyor.core.types import TaskId, WorkerId
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.engine.finishing import Ending
from conveyor.engine.leasing import PROMOTE_BATCH, grant_leases, promote_due
from conveyor.engine.limits import WAKE_BATCH
from conveyor.engine.reports import Report, ReportAck, unstorable
from conveyor.engine.submitting import store_batch
from conveyor.errors import (
    ConflictError,
    DuplicateKeyError,
    NotFoundError,
    StaleTokenError,
    StoreRefusedError,
)
from conveyor.store.base import LeaseReads, ReportReads, StoreTx

log = logging.getLogger(__name__)


class TaskOperations(EngineCore):
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

    def lease(
        self,
        worker_id: WorkerId,
        max_tasks: int,
        *,
        queues: Sequence[str] | None = None,
        free: Mapping[str, float] | None = None,
        seen_within_s: float | None = None,
        look_first: bool = False,
    ) -> list[Assignment]:
        """Lease up to `max_tasks` ready tasks, highest priority first, that fit `free` resources.

        `free=None` takes the worker's advertised resources. With `seen_within_s`, a worker not
        heard from (registered or heartbeat) for longer gets nothing: a long-poll woken long
        after it was asked must not hand tasks to a worker that may be paused or gone.

        With `look_first`, a read decides first whether there is anything to lease at all
        (StoreTx.may_lease): a worker that asks as soon as it has room mostly finds nothing. On
        PostgreSQL that read is two round trips and writes nothing, where a lease that finds
        nothing is a write transaction of three (it locks the worker's row, so its COMMIT
        waits for the WAL to be flushed).
        """
        if max_tasks < 1:
            return []
        if look_first:
            with self.store.transaction(write=False) as tx:
                now = self.clock.now()
                worker = self._live_worker(tx, worker_id, for_update=False)
                if _grants_nothing(worker, queues, now, seen_within_s) or not tx.may_lease(
                    list(queues) if queues else worker.queues, now
                ):
                    return []
        changes = Changes()
        with self.store.transaction() as tx:
            # Read once the store's lock is ours: a lease granted after waiting for it must not
            # start (or expire) at the moment the wait began.
            now = self.clock.now()
            tx.read_ahead(LeaseReads(worker_id, now, PROMOTE_BATCH, WAKE_BATCH))
            worker = self._live_worker(tx, worker_id)
            if _grants_nothing(worker, queues, now, seen_within_s):
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
                self.clock.now,
            )
            self._end(tx, unstartable, now, changes)
        self.events.publish(changes)
        return assignments

    def report(self, worker_id: WorkerId, reports: Sequence[Report]) -> list[ReportAck]:
        """Record finished attempts. A report whose token is not the task's current lease is
        refused and changes nothing: the task was re-leased, cancelled, or already recorded.

        A report the store refuses for good (a result with text that has no UTF-8 form, say)
        would be refused again at every retry, and with it every report sent in the same batch:
        the others are recorded alone, and that attempt is recorded as failed, saying why.
        """
        try:
            return self._record_reports(worker_id, reports)
        except StoreRefusedError as exc:
            if len(reports) > 1:
                return [ack for r in reports for ack in self.report(worker_id, [r])]
            (refused,) = reports
            log.warning(
                "the store refused a report; its attempt is recorded as failed",
                extra={"task_id": refused.task_id, "token": refused.token, "error": str(exc)},
            )
            return self._record_reports(worker_id, [unstorable(refused, exc)])

    def _record_reports(self, worker_id: WorkerId, reports: Sequence[Report]) -> list[ReportAck]:
        changes = Changes()
        acks: list[ReportAck] = []
        with self.store.transaction() as tx:
            now = self.clock.now()
            reported = [r.task_id for r in reports]
            tx.read_ahead(ReportReads(reported))
            tasks = tx.get_tasks(reported, for_update=True)
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
                            _cleaned(r.error),
                            _cleaned(r.traceback),
                            clean_text(r.stdout_tail),
                            clean_text(r.stderr_tail),
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
        with self.store.transaction() as tx:
            now = self.clock.now()
            expired = tx.expired_leases(now, self.settings.timer_batch)
            gone = _deregistered(tx, {t.worker_id for t in expired if t.worker_id is not None})
            endings = [
                Ending(t, Outcome.LOST, error=WORKER_DEREGISTERED if t.worker_id in gone else
                       LEASE_EXPIRED)
                for t in expired
            ]  # fmt: skip
            self._end(tx, endings, now, changes)
        self.events.publish(changes)
        return len(expired)

    def release_due(self) -> int:
        """Queue pending tasks whose start time or backoff has passed (lease() does this too)."""
        changes = Changes()
        with self.store.transaction() as tx:
            count = promote_due(tx, self.clock.now(), changes)
        self.events.publish(changes)
        return count


def _grants_nothing(
    worker: Worker, queues: Sequence[str] | None, now: datetime, seen_within_s: float | None
) -> bool:
    """Whether `worker` may lease nothing now: it drains, or has not been heard from within
    `seen_within_s`. Raises ConflictError when it asks for queues it did not register for."""
    if queues and not set(queues) <= set(worker.queues):
        others = sorted(set(queues) - set(worker.queues))
        raise ConflictError(
            f"queues {', '.join(map(repr, others))} are not among those worker "
            f"{worker.id} registered for ({', '.join(worker.queues)}); register with them "
            "to lease from them"
        )
    if worker.state is WorkerState.DRAINING:
        return True
    return seen_within_s is not None and (now - worker.last_seen_at).total_seconds() > (
        seen_within_s
    )


def _deregistered(tx: StoreTx, worker_ids: set[WorkerId]) -> set[WorkerId]:
    """Those of the workers that were deregistered: a lease they held ran out after it (see
    deregister_worker), and its attempt says why the worker went quiet."""
    return {
        worker_id
        for worker_id in worker_ids
        if (worker := tx.get_worker(worker_id)) is not None and worker.state is WorkerState.GONE
    }


def _cleaned(text: str | None) -> str | None:
    """Text stored the same way on every store: NUL and lone surrogates (which PostgreSQL, or
    every store, would refuse) become U+FFFD. An attempt's error and output are the task's, and
    refusing them would lose the attempt."""
    return None if text is None else clean_text(text)


def _stale_detail(task: Task, token: int) -> str:
    if task.state is TaskState.RUNNING and task.attempts != token:
        return f"stale token {token}: task {task.id} was leased again (token {task.attempts})"
    if task.state is TaskState.RUNNING:
        return f"task {task.id} is leased to another worker"
    return f"stale token {token}: task {task.id} is {task.state.value}"
