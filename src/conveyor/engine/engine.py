"""The engine: the only writer of task state. Every rule is applied here, through a Store.

The operations are grouped in small modules; Engine puts them together behind one object:
submitting_ops (submit, lease, report), worker_ops, actions (cancel, retry, delete), bulk
(those actions on every task a filter selects),
housekeeping (schedules and timers), pausing (queues, schedules, the cluster), limiting
(concurrency and rate limits), reads and why (what keeps a task from running).
"""

from __future__ import annotations

from conveyor.engine.actions import UserActions
from conveyor.engine.bulk import BulkActions
from conveyor.engine.housekeeping import Housekeeping
from conveyor.engine.limiting import Limiting
from conveyor.engine.pausing import Pausing
from conveyor.engine.reads import Reads
from conveyor.engine.submitting_ops import TaskOperations
from conveyor.engine.why import Why
from conveyor.engine.worker_ops import WorkerOperations


class Engine(
    TaskOperations,
    WorkerOperations,
    BulkActions,
    UserActions,
    Housekeeping,
    Pausing,
    Limiting,
    Reads,
    Why,
):
    """Every operation on tasks, workers and schedules, each in its own transaction."""

    def tick(self) -> None:
        """Run every timer once: pauses whose time is up, schedules, due tasks, expired leases,
        dead workers, limits' wakes, housekeeping."""
        self.end_pauses()
        self.fire_schedules()
        self.release_due()
        self.expire_leases()
        self.expire_workers()
        self.wake_limits()
        self.maintain()
