"""What every part of the engine shares: the store, the clock, settings, events, and ending attempts."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

from conveyor.clock import Clock, SystemClock
from conveyor.core.models import Task, Worker, WorkerState
from conveyor.core.types import TaskId, WorkerId
from conveyor.engine.events import Changes, Events
from conveyor.engine.finishing import Ending, end_attempts
from conveyor.engine.settings import EngineSettings
from conveyor.errors import (
    ConflictError,
    NotFoundError,
)
from conveyor.ids import new_id
from conveyor.store.base import Store, StoreTx

log = logging.getLogger(__name__)


class EngineCore:
    """The engine's shared state; the operations live in the classes built on it."""

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

    def _task_for_update(self, tx: StoreTx, task_id: TaskId) -> Task:
        task = tx.get_tasks([task_id], for_update=True).get(task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    def _live_worker(self, tx: StoreTx, worker_id: WorkerId, *, for_update: bool = True) -> Worker:
        worker = tx.get_worker(worker_id, for_update=for_update)
        if worker is None:
            raise NotFoundError(f"no worker {worker_id}; register first")
        if worker.state in (WorkerState.DEAD, WorkerState.GONE):
            raise ConflictError(f"worker {worker_id} is {worker.state.value}; register again")
        return worker
