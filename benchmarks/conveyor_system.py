"""Conveyor under the benchmark: `conveyor server` on a fresh database and two `conveyor worker`
processes, driven through the Python SDK over HTTP, as a user would."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path

import psutil

from benchmarks.results import record_latencies
from benchmarks.workloads import Recorder, Sizes
from conveyor.api.schemas import RegisterIn, ReportIn
from conveyor.client import AsyncClient, Client
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome
from conveyor.testing import Cluster

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.01


class ConveyorSystem:
    def __init__(self, name: str, directory: Path, sizes: Sizes, *, postgres: str | None) -> None:
        self.name = name
        self.sizes = sizes
        self._directory = directory
        self._postgres = postgres
        self._schemas: list[str] = []
        self._cluster: Cluster | None = None
        self._client: Client | None = None

    # ---- set-up -----------------------------------------------------------------------------

    def _db(self, label: str) -> str:
        if self._postgres is None:
            return str(self._directory / f"{self.name}-{label}.db")
        schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        self._schemas.append(schema)
        separator = "&" if "?" in self._postgres else "?"
        return f"{self._postgres}{separator}schema={schema}"

    def _start_server(self, label: str) -> Cluster:
        self.stop()
        cluster = Cluster(self._directory, db=self._db(label), lease_s=30.0, cwd=REPO)
        cluster.start_server()
        self._cluster = cluster
        self._client = Client(cluster.url, timeout_s=120)
        return cluster

    def start(self, slots_per_worker: int) -> None:
        cluster = self._cluster or self._start_server("main")
        for name in list(cluster.workers):
            cluster.stop_worker(name)
            del cluster.workers[name]
        for i in range(self.sizes.workers):
            cluster.start_worker(
                f"bench-{slots_per_worker}-{i}",
                concurrency=slots_per_worker,
                allow_modules=("benchmarks",),
                extra_args=self.sizes.worker_args,
            )

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self._postgres is not None and self._schemas:
            import psycopg

            from conveyor.store import split_schema

            conninfo, _ = split_schema(self._postgres)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for schema in self._schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            self._schemas.clear()

    def _succeeded(self) -> int:
        return self.client.status().counts.get("succeeded", 0)

    def _wait_done(self, since: int, count: int) -> None:
        """Until `count` more tasks than `since` have succeeded."""
        while self._succeeded() < since + count:
            time.sleep(POLL_S)

    # ---- workloads --------------------------------------------------------------------------

    def w1(self, record: Recorder) -> None:
        n = self.sizes.w1_tasks
        assert self._cluster is not None
        url = self._cluster.url

        base = self._succeeded()

        async def submit_all() -> float:
            gate = asyncio.Semaphore(self.sizes.submit_concurrency)
            async with AsyncClient(url, timeout_s=120) as client:

                async def one(i: int) -> None:
                    async with gate:
                        await client.submit("echo", i)

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                return time.perf_counter() - started

        started = time.perf_counter()
        submit_s = asyncio.run(submit_all())
        self._wait_done(base, n)
        elapsed = time.perf_counter() - started
        record("W1", "submit rate", n / submit_s, unit="tasks/s", higher_is_better=True)
        record("W1", "end to end", n / elapsed, unit="tasks/s", higher_is_better=True)

    def w1b(self, record: Recorder) -> None:
        n = self.sizes.w1_tasks
        specs = [TaskSpec(handler="echo", args=[i]) for i in range(n)]
        base = self._succeeded()
        started = time.perf_counter()
        self.client.submit_batch(specs)
        submitted = time.perf_counter() - started
        self._wait_done(base, n)
        elapsed = time.perf_counter() - started
        record("W1b", "batch submit", n / submitted, unit="tasks/s", higher_is_better=True)
        record("W1b", "end to end", n / elapsed, unit="tasks/s", higher_is_better=True)

    def w2(self, record: Recorder) -> None:
        times: list[float] = []
        for i in range(self.sizes.w2_rounds):
            started = time.perf_counter()
            outcome = self.client.run("echo", i, wait_s=30)  # submit and wait in one request
            times.append(time.perf_counter() - started)
            assert outcome.done and outcome.result == i, outcome
        record_latencies(record, "W2", times)

    def w3(self, record: Recorder) -> None:
        n = self.sizes.w3_tasks
        specs = [TaskSpec(handler="sleep", args=[self.sizes.w3_sleep_s]) for _ in range(n)]
        base = self._succeeded()
        started = time.perf_counter()
        self.client.submit_batch(specs)
        self._wait_done(base, n)
        record("W3", "wall", time.perf_counter() - started, unit="s", higher_is_better=False)

    def w4(self, record: Recorder) -> None:
        n = self.sizes.w4_tasks
        specs = [TaskSpec(handler="echo", args=[i], name=f"n{i}") for i in range(n)]
        refs = [{"$result": f"n{i}"} for i in range(n)]
        specs.append(TaskSpec(handler="benchmarks.handlers:total", args=[refs], name="sum"))
        started = time.perf_counter()
        tasks = self.client.submit_batch(specs)
        outcome = self.client.result(tasks[-1].id, wait_s=60)
        elapsed = time.perf_counter() - started
        assert outcome.result == n * (n - 1) // 2, outcome
        record("W4", "wall", elapsed, unit="s", higher_is_better=False)

    def dag(self, record: Recorder) -> None:
        s = self.sizes
        specs: list[TaskSpec] = []
        for layer in range(s.dag_layers):
            for i in range(s.dag_width):
                deps = (
                    [f"d{layer - 1}_{(i + k) % s.dag_width}" for k in range(s.dag_fan_in)]
                    if layer
                    else []
                )
                specs.append(
                    TaskSpec(handler="echo", args=[i], name=f"d{layer}_{i}", depends_on=deps)
                )
        edges = sum(len(spec.depends_on) for spec in specs)
        base = self._succeeded()
        started = time.perf_counter()
        self.client.submit_batch(specs)
        self._wait_done(base, len(specs))
        elapsed = time.perf_counter() - started
        record(
            "DAG", f"{len(specs):,} tasks, {edges:,} edges", elapsed, unit="s",
            higher_is_better=False,
        )  # fmt: skip

    def scale(self, record: Recorder) -> None:
        """Lease latency and server memory as the queue grows; no workers run meanwhile."""
        cluster = self._start_server("scale")
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
            for target in self.sizes.scale_queued:
                started = time.perf_counter()
                added = target - queued
                while queued < target:
                    size = min(len(batch), target - queued)
                    self.client.submit_batch(batch[:size])
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
                for _ in range(self.sizes.scale_lease_samples):
                    t = time.perf_counter()
                    (a,) = conn.lease(worker_id, 1).tasks
                    times.append(time.perf_counter() - t)
                    conn.report(worker_id, [ReportIn(task_id=a.task_id, token=a.token, outcome=Outcome.SUCCEEDED, result=1)])  # fmt: skip
                queued -= len(times)
                times.sort()
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
            self.stop()
