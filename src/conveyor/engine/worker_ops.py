"""Workers: registration, heartbeats that extend leases, and what happens when one goes away."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from conveyor.core.capabilities import Capabilities
from conveyor.core.models import Task, Worker, WorkerState
from conveyor.core.scheduling import holds_lease, lease_over
from conveyor.core.states import (
    WORKER_DEAD,
    WORKER_DEREGISTERED,
    Outcome,
)
from conveyor.core.types import JSON, TaskId, WorkerId
from conveyor.engine.base import EngineCore
from conveyor.engine.events import Changes
from conveyor.engine.finishing import Ending
from conveyor.engine.reports import HeartbeatReply
from conveyor.errors import (
    InvalidSpecError,
    NotFoundError,
)
from conveyor.store.base import StoreTx

log = logging.getLogger(__name__)


class WorkerOperations(EngineCore):
    def register_worker(
        self,
        *,
        name: str,
        host: str,
        pid: int,
        concurrency: int,
        queues: Sequence[str] = ("default",),
        resources: Mapping[str, float] | None = None,
        capabilities: Capabilities | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Worker:
        """Register a worker. `capabilities` says what it runs and `labels` what the operator
        tagged it with (conveyor.core.capabilities): a lease gives it only tasks it can run."""
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
            capabilities=capabilities,
            labels=dict(labels or {}),
        )
        with self.store.transaction() as tx:
            tx.insert_worker(worker)
        log.info("worker registered", extra={"worker_id": worker.id, "worker_name": name})
        return worker

    def worker_identity_key(self) -> bytes:
        """The key that binds a worker's calls to its registration (server/worker_identity.py),
        the same for every server of this database."""
        with self.store.transaction() as tx:
            return tx.shared_secret("worker-identity", secrets.token_bytes(32))

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
        with self.store.transaction() as tx:
            # Read once the store's lock is ours, so a wait for it does not shorten the leases.
            now = self.clock.now()
            expires = now + timedelta(seconds=self.settings.lease_s)
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
            # The attempt row keeps the lease as extended: it is what shows, after the fact,
            # that a task ran again only once its previous lease had really expired.
            tx.extend_attempt_leases([(t.id, t.attempts) for t in extended], expires)
        draining = worker.state is WorkerState.DRAINING
        return HeartbeatReply(
            extended=[t.id for t in extended],
            stop=stop,
            drain=draining,
            hand_back=draining and worker.hand_back,
        )

    def drain_workers(
        self,
        *,
        ids: Sequence[WorkerId] = (),
        queue: str | None = None,
        host: str | None = None,
        hand_back: bool = False,
    ) -> list[Worker]:
        """Tell workers to drain: lease nothing more, finish their running tasks, and exit; with
        `hand_back`, to stop: hand their running tasks back now (re-queued without spending a
        retry) and exit. Each learns it from its heartbeat's answer: at once if this server holds
        one of its heartbeats (see Waiters.orders), else at its next; meanwhile its leases give
        it nothing.

        Picks the workers with every id of `ids` (NotFoundError for one unknown, ConflictError
        for one dead or deregistered), or else every live worker that serves `queue` and runs
        on `host` (either may be left out, not both): none is not an error. A worker told to
        stop stays stopping when told to drain. Returns the workers told, as they are now.
        """
        if not ids and queue is None and host is None:
            raise InvalidSpecError("name workers by id, by queue or by host", field="ids")
        changes = Changes()
        with self.store.transaction() as tx:
            if ids:
                # Locked in id order, as every multi-row lock is: two drains cannot deadlock.
                chosen = [self._live_worker(tx, worker_id) for worker_id in sorted(set(ids))]
            else:
                matching = sorted(
                    w.id
                    for w in tx.list_workers()
                    if w.state in (WorkerState.ALIVE, WorkerState.DRAINING)
                    and (queue is None or queue in w.queues)
                    and (host is None or w.host == host)
                )
                locked = (tx.get_worker(worker_id, for_update=True) for worker_id in matching)
                chosen = [
                    w
                    for w in locked
                    if w is not None and w.state in (WorkerState.ALIVE, WorkerState.DRAINING)
                ]
            for worker in chosen:
                worker.state = WorkerState.DRAINING
                worker.hand_back = worker.hand_back or hand_back
                tx.update_worker(worker)
            changes.ordered.update(w.id for w in chosen)
        self.events.publish(changes)
        if chosen:
            log.info(
                "workers told to stop" if hand_back else "workers told to drain",
                extra={"worker_ids": [w.id for w in chosen]},
            )
        return chosen

    def deregister_worker(self, worker_id: WorkerId, *, stopped: bool = False) -> Worker:
        """Remove a worker; the tasks it holds go back to the queue without spending a retry,
        each when its lease runs out (at once if it has), or at once with `stopped`.

        Not sooner by default: a worker removed while it runs (an admin's mistake, or a worker
        only paused or cut off) does not know yet, and may still start a task it prefetched, or
        finish one it runs, until its next heartbeat tells it. Another lease of those tasks
        waits for that one to end, as after a worker declared dead (expire_workers), so that no
        task runs on two workers at once. `stopped` says the worker process runs nothing and
        will start nothing: the worker itself says so as it exits (a lease a last long-poll
        brought it is never started), an admin for a machine known to be down.
        """
        changes = Changes()
        with self.store.transaction() as tx:
            now = self.clock.now()
            worker = tx.get_worker(worker_id, for_update=True)
            if worker is None:
                raise NotFoundError(f"no worker {worker_id}")
            running = self._retire_worker(tx, worker, WorkerState.GONE)
            lapsed = running if stopped else [t for t in running if lease_over(t, now)]
            self._lose(tx, lapsed, WORKER_DEREGISTERED, now, changes)
            changes.ordered.add(worker.id)
        self.events.publish(changes)
        return worker

    def bridge_outage(self, longer_than_s: float) -> float:
        """Leave out of every lease and every worker's silence the time nobody ran the timers.

        The servers' timers run this first in every pass. If no server ran them for longer
        than `longer_than_s` (every server was down, or the database was), no heartbeat could
        be heard meanwhile either: the leases of running tasks and the last sighting of live
        workers move on by that gap, so that an outage does not get every worker declared
        dead and every running task run again. A worker that died during the outage has its
        tasks run again that much later. Returns the gap bridged in seconds (0 if none).
        """
        with self.store.transaction() as tx:
            now = self.clock.now()
            last = tx.timers_ran(now)
            gap_s = 0.0 if last is None else (now - last).total_seconds()
            if gap_s <= longer_than_s:
                return 0.0
            tx.shift_leases_and_silence(timedelta(seconds=gap_s))
        log.warning(
            f"no timers ran for {gap_s:.1f}s: leases and workers' silence moved on by as much",
            extra={"gap_s": round(gap_s, 3)},
        )
        return gap_s

    def expire_workers(self) -> int:
        """Declare workers dead after missed heartbeats. Safe to run twice.

        A dead worker may lease, heartbeat and extend nothing more, but a lease it was granted
        stays its own until it runs out: the worker counts on it and may still start the task
        (a restarted server hears from a worker first through its long-poll, for instance).
        Tasks whose lease is over go back to the queue now, the others when expire_leases()
        finds their lease over.
        """
        changes = Changes()
        with self.store.transaction() as tx:
            now = self.clock.now()
            cutoff = now - timedelta(seconds=self.settings.worker_dead_after_s)
            dead = tx.stale_workers(cutoff, self.settings.timer_batch)
            for worker in dead:
                running = self._retire_worker(tx, worker, WorkerState.DEAD)
                lapsed = [t for t in running if lease_over(t, now)]
                self._lose(tx, lapsed, WORKER_DEAD, now, changes)
        self.events.publish(changes)
        if dead:
            log.warning("workers declared dead", extra={"worker_ids": [w.id for w in dead]})
        return len(dead)

    def _retire_worker(self, tx: StoreTx, worker: Worker, state: WorkerState) -> list[Task]:
        """Mark the worker dead or gone; returns the tasks it holds leases on."""
        worker.state = state
        tx.update_worker(worker)
        return tx.running_on_worker(worker.id)

    def _lose(
        self, tx: StoreTx, running: list[Task], why: str, now: datetime, changes: Changes
    ) -> None:
        self._end(tx, [Ending(t, Outcome.LOST, error=why) for t in running], now, changes)
