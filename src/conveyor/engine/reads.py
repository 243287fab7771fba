"""Reads for clients and dashboards: each one transaction, never a write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from conveyor.core.models import Attempt, Task, TaskDetail, Worker
from conveyor.core.types import TaskId, WorkerId
from conveyor.engine.base import EngineCore
from conveyor.errors import (
    NotFoundError,
)
from conveyor.store.base import StateCount, TaskFilter

log = logging.getLogger(__name__)


class Reads(EngineCore):
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
        """When the next pending task's start time or backoff ends, or a rate lets held tasks
        go (a limit's wake), if any is waiting on time."""
        with self.store.transaction(write=False) as tx:
            due = tx.next_due()
            wake = tx.next_limit_wake(self.clock.now())
        return min((when for when in (due, wake) if when is not None), default=None)
