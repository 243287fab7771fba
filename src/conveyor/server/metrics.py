"""Prometheus metrics at `GET /metrics`, in a registry of the app's own (never the global one).

Two kinds, and the difference matters when several servers share one database:

| metric                                   | labels                   | source                       |
| ---------------------------------------- | ------------------------ | ---------------------------- |
| conveyor_tasks_submitted_total           | queue, handler           | this server (engine events)  |
| conveyor_tasks_finished_total            | queue, handler, state    | this server (engine events)  |
| conveyor_leases_granted_total            | queue                    | this server (engine events)  |
| conveyor_task_duration_seconds           | queue, handler, state    | this server (engine events)  |
| conveyor_task_wait_seconds               | queue                    | this server (engine events)  |
| conveyor_engine_call_seconds             | call                     | this server (its own calls)  |
| conveyor_tasks                           | state, queue             | the database, at scrape time |
| conveyor_workers                         | state                    | the database, at scrape time |
| conveyor_queue_slots                     | queue                    | the database, at scrape time |
| conveyor_paused                          | scope, name              | the database, at scrape time |
| conveyor_limit_running_tasks             | limit                    | the database, at scrape time |
| conveyor_limit_held_tasks                | limit                    | the database, at scrape time |
| conveyor_tasks_unschedulable             |                          | the database, at most every 10 s |
| conveyor_info                            | version, store           | this server                  |

`queue` and `handler` label values are bounded (conveyor.server.metric_labels): a value is
reported as itself once it is known (the queues of registered workers, built-in handlers, handlers
that succeeded, the operator's `--metrics-queue`/`--metrics-handler`), and as `other` until then,
so that clients choosing names cannot add series without end.

Per-server metrics count what this process committed since it started: they start at zero on a
restart (Prometheus' `rate()` handles that) and, with several servers, only their sum over the
servers is the cluster's figure. Database metrics are the same on every server: aggregate them
with `max`, not `sum`. `finished` counts a task each time it reaches a terminal state, so a task
retried by hand and finished again counts twice; `conveyor_tasks` shows where tasks are now.
Durations run from a task's first start to its end (retries and their backoff included); waits
from submission to first start. A queue's slots are those of the live workers that serve it (a
worker serving several queues counts in each): its utilisation is
`conveyor_tasks{state="running"} / conveyor_queue_slots`.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.core.models import Task, Worker, WorkerState
from conveyor.core.pauses import PauseScope
from conveyor.core.states import TaskState
from conveyor.engine import Engine
from conveyor.engine.events import Changes
from conveyor.server.metric_labels import MetricLabels

TASK_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
CALL_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip


class ServerMetrics:
    """The metrics of one app. Thread-safe: engine listeners run in the committing thread."""

    def __init__(
        self,
        *,
        version: str = "unknown",
        store: str = "unknown",
        labels: MetricLabels | None = None,
    ) -> None:
        self.labels = labels or MetricLabels()
        self.registry = CollectorRegistry()
        r = self.registry
        self.submitted = Counter(
            "conveyor_tasks_submitted",
            "Tasks submitted through this server.",
            ["queue", "handler"],
            registry=r,
        )
        self.finished = Counter(
            "conveyor_tasks_finished",
            "Tasks that reached a terminal state (succeeded, failed, timed_out, cancelled) in "
            "transactions this server committed.",
            ["queue", "handler", "state"],
            registry=r,
        )
        self.leases = Counter(
            "conveyor_leases_granted",
            "Leases this server granted to workers (one per task and attempt).",
            ["queue"],
            registry=r,
        )
        self.duration = Histogram(
            "conveyor_task_duration_seconds",
            "From a task's first start to its end, for tasks that started.",
            ["queue", "handler", "state"],
            buckets=TASK_SECONDS_BUCKETS,
            registry=r,
        )
        self.wait = Histogram(
            "conveyor_task_wait_seconds",
            "From submission to first start.",
            ["queue"],
            buckets=TASK_SECONDS_BUCKETS,
            registry=r,
        )
        self.calls = Histogram(
            "conveyor_engine_call_seconds",
            "Engine and store calls made by this server's HTTP handlers, by call.",
            ["call"],
            buckets=CALL_SECONDS_BUCKETS,
            registry=r,
        )
        self._database = _DatabaseCollector(version, store)
        r.register(self._database)
        self._scrape_lock = threading.Lock()

    # ---- recording --------------------------------------------------------------------------

    def on_changes(self, changes: Changes) -> None:
        """Engine listener: count what a commit did."""
        queue, handler = self.labels.queue, self.labels.handler
        # A queue a worker leased from is one it serves; a handler that succeeded exists.
        for task in changes.leased:
            queue.learn(task.queue)
        for task in changes.ended.values():
            if task.state is TaskState.SUCCEEDED:
                handler.learn(task.handler)
        # Counted per label set first: a batch of 100,000 tasks is a handful of increments.
        submitted = Tally((queue(t.queue), handler(t.handler)) for t in changes.submitted)
        for (queue_label, handler_label), n in submitted.items():
            self.submitted.labels(queue_label, handler_label).inc(n)
        for queue_label, n in Tally(queue(t.queue) for t in changes.leased).items():
            self.leases.labels(queue_label).inc(n)
        for task in changes.leased:
            if task.attempts == 1 and task.started_at is not None:
                wait_s = (task.started_at - task.created_at).total_seconds()
                self.wait.labels(queue(task.queue)).observe(max(0.0, wait_s))
        for task in changes.ended.values():
            labels = (queue(task.queue), handler(task.handler), task.state.value)
            self.finished.labels(*labels).inc()
            duration_s = _duration_s(task)
            if duration_s is not None:
                self.duration.labels(*labels).observe(duration_s)

    def worker_registered(self, worker: Worker) -> None:
        """A worker serves its queues: report them as themselves (conveyor.server.metric_labels)."""
        for queue in worker.queues:
            self.labels.queue.learn(queue)

    def observe_call(self, name: str, seconds: float) -> None:
        self.calls.labels(name).observe(seconds)

    # ---- exposition -------------------------------------------------------------------------

    def scrape(self, engine: Engine, *, unschedulable: int = 0) -> bytes:
        """Read the database figures, then render every metric. Blocking: call it in a thread.
        `unschedulable`: waiting tasks no live worker could ever take (server/unschedulable.py)."""
        counts = engine.counts()
        workers = engine.workers()
        by_state: dict[str, int] = {state.value: 0 for state in WorkerState}
        for worker in workers:
            by_state[worker.state.value] += 1
            self.worker_registered(worker)
        slots: Tally[str] = Tally()
        for worker in workers:
            if worker.state is WorkerState.ALIVE:
                for queue in worker.queues:
                    slots[self.labels.queue(queue)] += worker.concurrency
        paused = {
            (p.scope.value, self.labels.queue(p.name) if p.scope is PauseScope.QUEUE else p.name)
            for p in engine.pauses()
        }
        tasks: dict[tuple[str, str], int] = {}
        for row in counts:
            key = (row.state.value, self.labels.queue(row.queue))
            tasks[key] = tasks.get(key, 0) + row.count
        # Limit names are the operator's own (a handful, set by hand): safe as label values.
        limits = {use.limit.name: (use.running, use.held) for use in engine.limits()}
        with self._scrape_lock:  # one scrape's figures are rendered with that scrape's reads
            self._database.tasks = tasks
            self._database.workers = by_state
            self._database.slots = dict(slots)
            self._database.paused = paused
            self._database.limits = limits
            self._database.unschedulable = unschedulable
            return generate_latest(self.registry)


class _DatabaseCollector(Collector):
    """Gauges whose values are read from the database just before each scrape."""

    def __init__(self, version: str, store: str) -> None:
        self.version = version
        self.store = store
        self.tasks: dict[tuple[str, str], int] = {}
        self.workers: dict[str, int] = {}
        self.slots: dict[str, int] = {}
        self.paused: set[tuple[str, str]] = set()
        self.limits: dict[str, tuple[int, int]] = {}
        self.unschedulable = 0

    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("conveyor", "The server's version and store.")
        info.add_metric([], {"version": self.version, "store": self.store})
        yield info
        tasks = GaugeMetricFamily(
            "conveyor_tasks",
            "Tasks in the database by state and queue (every server reports the same).",
            labels=["state", "queue"],
        )
        # Every state of every known queue, zeros included, so that a drained queue reads 0.
        for queue in sorted({queue for _, queue in self.tasks}):
            for state in TaskState:
                tasks.add_metric([state.value, queue], self.tasks.get((state.value, queue), 0))
        yield tasks
        workers = GaugeMetricFamily(
            "conveyor_workers",
            "Registered workers by state (alive, draining, dead, gone), from the database.",
            labels=["state"],
        )
        for worker_state, count in self.workers.items():
            workers.add_metric([worker_state], count)
        yield workers
        slots = GaugeMetricFamily(
            "conveyor_queue_slots",
            "Slots of the live workers that serve each queue (a worker serving several queues "
            'counts in each); busy ones are conveyor_tasks{state="running"}.',
            labels=["queue"],
        )
        for queue, count in sorted(self.slots.items()):
            slots.add_metric([queue], count)
        yield slots
        paused = GaugeMetricFamily(
            "conveyor_paused",
            "1 for each pause in force: scope queue (name: the queue), schedule, or all.",
            labels=["scope", "name"],
        )
        for scope, name in sorted(self.paused):
            paused.add_metric([scope, name], 1)
        yield paused
        running = GaugeMetricFamily(
            "conveyor_limit_running_tasks",
            "Running tasks that take each limit (its slots in use, all keys together).",
            labels=["limit"],
        )
        held = GaugeMetricFamily(
            "conveyor_limit_held_tasks",
            "Queued tasks each limit holds back (one of its keys was full when a lease came to "
            "them, or they wait in its line for a lease).",
            labels=["limit"],
        )
        for name, (in_use, waiting) in sorted(self.limits.items()):
            running.add_metric([name], in_use)
            held.add_metric([name], waiting)
        yield running
        yield held
        yield GaugeMetricFamily(
            "conveyor_tasks_unschedulable",
            "Pending and queued tasks no live worker could ever take: none serves their queue, or "
            "none of those runs their handler or has their required labels or resources.",
            value=self.unschedulable,
        )


def _duration_s(task: Task) -> float | None:
    if task.started_at is None or task.finished_at is None:
        return None
    return max(0.0, (task.finished_at - task.started_at).total_seconds())
