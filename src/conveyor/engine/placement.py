"""Which ready tasks a lease may give a worker: those it can run, and of those that prefer other
workers' labels, only the ones no such worker is free to take now (conveyor.core.capabilities).

The lease (engine/leasing.py) builds one Placement per call. Its `runnable` goes to the stores'
candidate query, which leaves out in SQL the tasks the worker cannot run, so that however many
of them wait at the head of a queue they hide nothing behind them; `eligible` applies the same
rule to what was read, and the rule on preferences, which needs the other workers (read once
per lease, and only when a candidate prefers labels this worker lacks).
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.core.capabilities import has_preferred, runs
from conveyor.core.models import Task, Worker, WorkerState
from conveyor.core.scheduling import fits
from conveyor.store.base import RunnableBy, StoreTx


class Placement:
    def __init__(self, tx: StoreTx, worker: Worker) -> None:
        self._tx = tx
        self._worker = worker
        self.runnable = RunnableBy(worker.capabilities, worker.labels)
        self._free_others: list[Worker] | None = None

    def eligible(self, tasks: Iterable[Task]) -> list[Task]:
        """`tasks`, in their order, without those this worker cannot run or should leave."""
        worker = self._worker
        return [
            task
            for task in tasks
            if runs(task.handler, task.require, worker.capabilities, worker.labels)
            and not self._preferred_elsewhere(task)
        ]

    def _preferred_elsewhere(self, task: Task) -> bool:
        """A task that prefers labels this worker lacks goes to a live worker with them that
        could run it and has a free slot, if there is one; else to whoever asks."""
        if not task.prefer or has_preferred(task.prefer, self._worker.labels):
            return False
        return any(
            task.queue in other.queues
            and has_preferred(task.prefer, other.labels)
            and runs(task.handler, task.require, other.capabilities, other.labels)
            and fits(task.resources, other.resources)
            for other in self._others_with_a_free_slot()
        )

    def _others_with_a_free_slot(self) -> list[Worker]:
        if self._free_others is None:
            running = self._tx.running_counts()
            self._free_others = [
                w
                for w in self._tx.list_workers()
                if w.id != self._worker.id
                and w.state is WorkerState.ALIVE
                and running.get(w.id, 0) < w.concurrency
            ]
        return self._free_others
