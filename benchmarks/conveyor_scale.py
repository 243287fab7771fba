"""Conveyor's own measurements, which no peer has the shape for: a 10,000-task DAG, and lease
time and server memory as the queue grows to a million tasks."""

from __future__ import annotations

import os
import statistics
import time
from typing import TYPE_CHECKING

import psutil

from benchmarks.workloads import Recorder, Sizes
from conveyor.api.schemas import RegisterIn, ReportIn
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome

if TYPE_CHECKING:
    from benchmarks.conveyor_system import ConveyorSystem

POLL_S = 0.01


def _wait_succeeded(system: ConveyorSystem, since: int, count: int) -> None:
    """Until `count` more tasks than `since` have succeeded (one status call per poll: waiting
    on 10,000 results one by one would time the waiting, not the DAG)."""
    while system.client.status().counts.get("succeeded", 0) < since + count:
        time.sleep(POLL_S)


def dag(system: ConveyorSystem, record: Recorder, sizes: Sizes) -> None:
    """100 layers of 100 tasks, each depending on 3 of the layer before, in one batch."""
    specs: list[TaskSpec] = []
    for layer in range(sizes.dag_layers):
        for i in range(sizes.dag_width):
            deps = (
                [f"d{layer - 1}_{(i + k) % sizes.dag_width}" for k in range(sizes.dag_fan_in)]
                if layer
                else []
            )
            specs.append(TaskSpec(handler="echo", args=[i], name=f"d{layer}_{i}", depends_on=deps))
    edges = sum(len(spec.depends_on) for spec in specs)
    base = system.client.status().counts.get("succeeded", 0)
    started = time.perf_counter()
    system.client.submit_batch(specs)
    _wait_succeeded(system, base, len(specs))
    elapsed = time.perf_counter() - started
    record(
        "DAG", f"{len(specs):,} tasks, {edges:,} edges", elapsed, unit="s", higher_is_better=False
    )


def scale(system: ConveyorSystem, record: Recorder, sizes: Sizes) -> None:
    """Lease latency and server memory as the queue grows; no workers run meanwhile."""
    cluster = system.start_server("scale")
    assert cluster.server is not None
    server = psutil.Process(cluster.server.pid)
    spec = TaskSpec(handler="echo", args=[1])
    # Batches of 1,000 at every size, so that the server's memory shows the queue, not the
    # high-water mark of parsing a larger batch.
    batch = [spec] * 1_000
    queued = 0
    conn = WorkerConnection(cluster.url, timeout_s=120)
    probe = RegisterIn(name="bench-probe", host="localhost", pid=os.getpid(), concurrency=1)
    try:
        for target in sizes.scale_queued:
            started = time.perf_counter()
            added = target - queued
            while queued < target:
                size = min(len(batch), target - queued)
                system.client.submit_batch(batch[:size])
                queued += size
            if added >= 100_000:
                rate = added / (time.perf_counter() - started)
                record(
                    "Scale", "batch submit (1,000 per call)", rate, unit="tasks/s",
                    higher_is_better=True,
                )  # fmt: skip
            # A new probe each time: the last one was declared dead while the queue filled.
            worker_id = conn.register(probe).id
            times: list[float] = []
            for _ in range(sizes.scale_lease_samples):
                t = time.perf_counter()
                (a,) = conn.lease(worker_id, 1).tasks
                times.append(time.perf_counter() - t)
                conn.report(worker_id, [ReportIn(task_id=a.task_id, token=a.token, outcome=Outcome.SUCCEEDED, result=1)])  # fmt: skip
            queued -= len(times)
            record(
                "Scale", f"lease p50, {target:,} queued", statistics.median(times) * 1000,
                unit="ms", higher_is_better=False,
            )  # fmt: skip
            record(
                "Scale", f"server RSS, {target:,} queued", server.memory_info().rss / 2**20,
                unit="MiB", higher_is_better=False,
            )  # fmt: skip
    finally:
        conn.close()
        system.stop()
