"""One run of the embedded Scheduler: the worker program over the in-process server, watched.

The tasks run in the real worker (conveyor.worker.Worker, in a thread of this process: its
leaser, reporter and heartbeat threads, its process pool and bookkeeping), which calls the
server's operations through a LocalServer (conveyor.server.local) instead of the network: it
registers, leases, heartbeats and reports exactly as a remote worker does, through the same
implementations. Embedded mode has no lease loop of its own.

Meanwhile the calling thread watches the engine, woken by its events: it calls the progress
callback, and stops the worker once every job has ended, the time is up, stop() was asked for,
or what is left is stuck: queued jobs this worker can never lease (they need resources the
scheduler does not have), with nothing running that could change that and no start time or
backoff ahead. Queued jobs of a queue the worker was not started for (added during the run) get
a new worker that serves their queue too.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

from conveyor.core.models import Task
from conveyor.core.scheduling import fits
from conveyor.core.states import LIVE_STATES, TaskState
from conveyor.engine import Changes, Engine
from conveyor.errors import ConveyorError
from conveyor.handlers import HandlerPolicy
from conveyor.hostmetrics import default_resources
from conveyor.server.local import LocalServer
from conveyor.server.settings import ServerSettings
from conveyor.store.base import StateCount, TaskFilter
from conveyor.worker import Worker, WorkerConfig

log = logging.getLogger(__name__)

LOOK_INTERVAL_S = 0.05
"""The engine is looked at (counts by state, the progress callback) at most this often: a busy
run commits thousands of changes a second, and a look per change would compete with them."""
IDLE_LOOK_S = 0.5
"""Without engine events (jobs that run long), the progress callback still comes this often."""


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


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class Setup:
    """What a run's worker and server are made of (the Scheduler's settings)."""

    engine: Engine
    concurrency: int
    policy: HandlerPolicy
    resources: Mapping[str, float]
    timer_interval_s: float


class Ending(Enum):
    """Why a run's watch stops its worker."""

    DONE = "every job has ended"
    STOPPED = "the scheduler was asked to stop"
    TIME_UP = "the run's time is up"
    STUCK = "the jobs left need resources this scheduler does not have"
    NEW_QUEUES = "jobs wait in queues this worker does not serve"


class EmbeddedRun:
    """Run jobs until one of the Endings; `__call__` returns the counts and the stuck jobs."""

    def __init__(
        self,
        setup: Setup,
        on_progress: ProgressCallback | None,
        *,
        timeout_s: float | None,
        stop_requested: threading.Event,
    ) -> None:
        self.setup = setup
        self.engine = setup.engine
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.deadline = None if timeout_s is None else self.started + timeout_s
        self.stop_requested = stop_requested
        self.advertised = {name: 0.0 for name in default_resources()} | dict(setup.resources)
        """Exactly the scheduler's resources: the host's that it does not name count as none,
        so that a job needing more than the scheduler was given is stuck, wherever it runs."""
        self._wake = threading.Event()
        """Set by engine events, stop(), the worker's end: time to look again."""
        self._attention = threading.Event()
        """Set by stop() and the worker's end: look now, whenever the last look was."""

    def __call__(self) -> tuple[dict[TaskState, int], list[Task]]:
        unsubscribe = self.engine.events.subscribe(self._on_changes)
        try:
            while True:
                queues = self._live_queues()
                if not queues:
                    return self._look(), []
                ending, counts = self._run_worker(queues)
                if ending is Ending.STUCK:
                    return counts, self._queued()
                if ending is not Ending.NEW_QUEUES:
                    return counts, []
        finally:
            unsubscribe()

    def wake(self) -> None:
        """Look now (any thread): stop() was asked for."""
        self._attention.set()
        self._wake.set()

    def _on_changes(self, changes: Changes) -> None:
        self._wake.set()

    # ---- one worker ------------------------------------------------------------------------------

    def _run_worker(self, queues: list[str]) -> tuple[Ending, dict[TaskState, int]]:
        settings = ServerSettings(timer_interval_s=self.setup.timer_interval_s)
        config = WorkerConfig(
            name=f"embedded-{os.getpid()}",
            concurrency=self.setup.concurrency,
            queues=tuple(queues),
            resources=self.advertised,
            policy=self.setup.policy,
            advertise=False,  # the only worker: what it cannot run fails, no other will come
            prefetch_hold_s=math.inf,  # nor is there another to hand a waiting task to
            # The script runs its own code: its tasks see what it sees (docs/security.md).
            inherit_environment=True,
        )
        with LocalServer(self.engine, settings) as server:
            worker = Worker(config, through=server)
            running = _WorkerThread(worker, self.wake)
            try:
                ending, counts = self._watch(running, frozenset(queues))
            except BaseException:
                # Ctrl-C, or the progress callback failed: kill the running jobs and hand them
                # back now (they run again next time without spending a retry).
                worker.stop("the embedded run was interrupted")
                worker.stop("the embedded run was interrupted")
                running.thread.join()
                raise
            running.thread.join()
        running.raise_failure()
        return ending, counts

    def _watch(
        self, running: _WorkerThread, queues: frozenset[str]
    ) -> tuple[Ending, dict[TaskState, int]]:
        ending: Ending | None = None
        while True:
            self._wake.clear()
            self._attention.clear()
            looked_at = time.monotonic()
            counts = self._look()
            if not running.thread.is_alive():
                return ending or Ending.STOPPED, counts
            if ending is None:
                ending = self._ending(counts, queues)
                if ending is not None:
                    # Once nothing runs the worker leaves at once; otherwise its running jobs
                    # get its grace period to end, and progress is shown meanwhile.
                    running.worker.stop(ending.value)
            self._wake.wait(self._wait_s(draining=ending is not None))
            self._attention.wait(max(0.0, looked_at + LOOK_INTERVAL_S - time.monotonic()))

    def _ending(self, counts: Mapping[TaskState, int], queues: frozenset[str]) -> Ending | None:
        if not any(counts.get(state, 0) for state in LIVE_STATES):
            return Ending.DONE
        if self.stop_requested.is_set():
            return Ending.STOPPED
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return Ending.TIME_UP
        if counts.get(TaskState.RUNNING, 0) or not counts.get(TaskState.QUEUED, 0):
            return None  # what runs may make more jobs ready; pending ones wait on them
        if self.engine.next_due_at() is not None:
            return None  # a start time or a backoff is ahead
        unserved = seen = False
        for task in self._each_queued():
            seen = True
            # Its one worker has no labels: a job that requires some is stuck, as one that
            # needs more than the scheduler has.
            if fits(task.resources, self.advertised) and not task.require:
                if task.queue in queues:
                    return None  # the worker will lease it
                unserved = True
        if not seen:
            return None  # leased since `counts` was read: look again
        return Ending.NEW_QUEUES if unserved else Ending.STUCK

    def _wait_s(self, *, draining: bool) -> float:
        """The longest wait for an event before looking again: the deadline, if it is ahead."""
        wait_s = IDLE_LOOK_S
        if self.deadline is not None and not draining:
            wait_s = min(wait_s, max(0.0, self.deadline - time.monotonic()))
        return wait_s

    # ---- reading the engine --------------------------------------------------------------------

    def _look(self) -> dict[TaskState, int]:
        counts = _by_state(self.engine.counts())
        if self.on_progress is not None:
            self.on_progress(Progress(counts, time.monotonic() - self.started))
        return counts

    def _live_queues(self) -> list[str]:
        return sorted({c.queue for c in self.engine.counts() if c.state in LIVE_STATES})

    def _each_queued(self) -> Iterator[Task]:
        after: int | None = None
        while True:
            page = self.engine.list_tasks(
                TaskFilter(states=(TaskState.QUEUED,)), after_seq=after, limit=1000
            )
            yield from page
            if len(page) < 1000:
                return
            after = page[-1].seq

    def _queued(self) -> list[Task]:
        return self.engine.list_tasks(TaskFilter(states=(TaskState.QUEUED,)), limit=1000)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class _WorkerThread:
    """The worker's run() in a thread of its own; `on_end` is called once it has returned."""

    def __init__(self, worker: Worker, on_end: Callable[[], None]) -> None:
        self.worker = worker
        self._on_end = on_end
        self._exit_code: int | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="conveyor-embedded-worker")
        self.thread.start()

    def _run(self) -> None:
        try:
            self._exit_code = self.worker.run()
        except BaseException as exc:
            self._error = exc
        finally:
            self._on_end()

    def raise_failure(self) -> None:
        """Raise what stopped the worker, if something did."""
        if self._error is not None:
            raise self._error
        if self._exit_code:
            raise ConveyorError(
                "the embedded worker stopped after a failure; the log above says why"
            )


def _by_state(counts: list[StateCount]) -> dict[TaskState, int]:
    totals: dict[TaskState, int] = {}
    for c in counts:
        totals[c.state] = totals.get(c.state, 0) + c.count
    return totals
