"""A short history of the system, kept in this server's memory for the dashboard and /monitor.

Every `interval_s` one pass, in a worker thread, samples the server's host, reads each live
worker's last heartbeat metrics (a worker's point is added only when its heartbeat is new) and
the task counts by state. The last `size` points of each are kept; nothing is written to the
database. Each server keeps its own history: a second server on the same database shows the same
workers and counts (it reads them from the database) but its own host, from the moment it started.
Throughput is what this server saw finish (the engine events of its own commits).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from anyio import to_thread

from conveyor.api.schemas import MetricPoint, StatusPoint
from conveyor.core.models import Worker
from conveyor.core.states import TaskState
from conveyor.core.types import JSON, WorkerId
from conveyor.engine import Engine
from conveyor.engine.events import Changes
from conveyor.hostmetrics import SystemMetrics
from conveyor.server.reads import LIVE_WORKER_STATES

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
DEFAULT_SIZE = 150  # five minutes at the default interval
FIRST_PASS_S = 0.5
MAX_WORKERS = 2000  # histories kept at most; beyond that, new workers have none

PointT = TypeVar("PointT", MetricPoint, StatusPoint)


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    server: dict[str, JSON]
    server_history: list[MetricPoint]
    worker_history: dict[WorkerId, list[MetricPoint]]


class Monitoring:
    """Bounded in-memory histories of the host, the workers and the task counts. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        host: SystemMetrics,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        size: int = DEFAULT_SIZE,
    ) -> None:
        if interval_s <= 0 or size < 1:
            raise ValueError("interval_s must be positive and size at least 1")
        self.engine = engine
        self.host = host
        self.interval_s = interval_s
        self.size = size
        self._lock = threading.Lock()
        self._server_now: dict[str, JSON] | None = None
        self._server: deque[MetricPoint] = deque(maxlen=size)
        self._workers: dict[WorkerId, deque[MetricPoint]] = {}
        self._status: deque[StatusPoint] = deque(maxlen=size)
        self._finished_since_last = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---- life cycle (on the event loop) -----------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="monitoring")

    async def stop(self) -> None:
        """Stop after the pass in progress: it reads the store, which the caller closes next."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        # The first pass waits a little: CPU figures cover the time since the previous sample,
        # and one taken just after start-up would cover almost nothing.
        pause_s = min(FIRST_PASS_S, self.interval_s)
        while not self._stopping.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(pause_s):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            await to_thread.run_sync(self.sample_once)
            pause_s = self.interval_s

    # ---- recording (any thread) -------------------------------------------------------------

    def on_changes(self, changes: Changes) -> None:
        """Engine listener: count finished tasks for the throughput history."""
        if changes.ended:
            with self._lock:
                self._finished_since_last += len(changes.ended)

    def sample_once(self) -> None:
        """One pass: the host, the workers' heartbeats, the counts. Blocking; never raises."""
        self._sample_host()
        try:
            workers = self.engine.workers()
            counts = self.engine.counts()
        except Exception as exc:  # the store is down: keep the host history going
            log.warning("monitoring cannot read the store", extra={"error": str(exc)})
            return
        now = self.engine.clock.now()
        by_state = {state.value: 0 for state in TaskState}
        for row in counts:
            by_state[row.state.value] += row.count
        with self._lock:
            self._record_workers(workers)
            finished, self._finished_since_last = self._finished_since_last, 0
            self._status.append(StatusPoint(at=now, counts=by_state, finished=finished))

    def server_sample(self) -> dict[str, JSON]:
        """The latest sample of the host; blocking (takes one if none was taken yet)."""
        with self._lock:
            latest = self._server_now
        return latest if latest is not None else self._sample_host()

    def _sample_host(self) -> dict[str, JSON]:
        try:
            sample = self.host.sample()
        except Exception:  # a metrics bug must not stop the history of the rest
            log.exception("sampling the server host failed")
            return {}
        point = metric_point(sample, self.engine.clock.now())
        with self._lock:
            self._server_now = sample
            self._server.append(point)
        return sample

    def _record_workers(self, workers: list[Worker]) -> None:
        live = {w.id: w for w in workers if w.state in LIVE_WORKER_STATES}
        for gone in self._workers.keys() - live.keys():
            del self._workers[gone]
        for worker in live.values():
            if not worker.metrics:
                continue
            history = self._workers.get(worker.id)
            if history is None:
                if len(self._workers) >= MAX_WORKERS:
                    continue
                history = self._workers[worker.id] = deque(maxlen=self.size)
            if not history or history[-1].at < worker.last_seen_at:
                history.append(metric_point(worker.metrics, worker.last_seen_at))

    # ---- reading (any thread) ---------------------------------------------------------------

    def history(self, since: datetime | None = None) -> MonitorSnapshot:
        """The histories, only the points after `since` when given (for incremental polling)."""
        with self._lock:
            server_now = dict(self._server_now or {})
            server = _after(self._server, since)
            workers = {wid: _after(points, since) for wid, points in self._workers.items()}
        return MonitorSnapshot(server_now, server, workers)

    def status_history(self, since: datetime | None = None) -> list[StatusPoint]:
        with self._lock:
            return _after(self._status, since)


def _after(points: deque[PointT], since: datetime | None) -> list[PointT]:
    if since is None:
        return list(points)
    return [p for p in points if p.at > since]


def metric_point(sample: Mapping[str, JSON], at: datetime) -> MetricPoint:
    """The figures of a host sample (a heartbeat's or the server's) that the history keeps."""
    load = sample.get("load_avg")
    gpus = [g for g in _list(sample.get("gpus")) if isinstance(g, dict)]
    gpu_use = [_number(g.get("utilization_percent")) for g in gpus]
    gpu_total = sum(_number(g.get("memory_total_bytes")) or 0 for g in gpus)
    gpu_used = sum(_number(g.get("memory_used_bytes")) or 0 for g in gpus)
    known_use = [u for u in gpu_use if u is not None]
    return MetricPoint(
        at=at,
        cpu_percent=_number(sample.get("cpu_percent")),
        memory_percent=_number(sample.get("memory_percent")),
        disk_percent=_number(sample.get("disk_percent")),
        load_1m=_number(load[0]) if isinstance(load, list) and load else None,
        disk_read_bytes_per_s=_number(sample.get("disk_read_bytes_per_s")),
        disk_write_bytes_per_s=_number(sample.get("disk_write_bytes_per_s")),
        net_sent_bytes_per_s=_number(sample.get("net_sent_bytes_per_s")),
        net_recv_bytes_per_s=_number(sample.get("net_recv_bytes_per_s")),
        gpu_percent=sum(known_use) / len(known_use) if known_use else None,
        gpu_memory_percent=round(100 * gpu_used / gpu_total, 1) if gpu_total else None,
    )


def _number(value: JSON) -> float | None:
    # bool is an int: a heartbeat's `true` is not a figure
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _list(value: JSON) -> list[JSON]:
    return value if isinstance(value, list) else []
