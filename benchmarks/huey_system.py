"""Huey on Redis under the same workloads: two `huey_consumer` processes (process workers, with
`-w` set to the slots per worker), Redis as queue and result store, blocking reads on both sides
(see benchmarks/huey_app.py for the settings and why). Enqueues are task calls from the
benchmark process, one per task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks.results import record_latencies, redis_system_unavailable
from benchmarks.workloads import Recorder, Sizes

REPO = Path(__file__).resolve().parent.parent


def available(redis_url: str) -> str | None:
    """None when Huey can run here; otherwise why not."""
    return redis_system_unavailable("huey", redis_url)


class HueySystem:
    name = "huey"

    def __init__(self, directory: Path, sizes: Sizes, *, redis_url: str) -> None:
        # Read by huey_app at import, here and in the consumers, which inherit the environment.
        # Huey keeps letters, digits and underscores of the name for its Redis keys.
        os.environ["BENCH_REDIS_URL"] = redis_url
        os.environ["BENCH_HUEY_QUEUE"] = f"bench_{uuid.uuid4().hex[:8]}"
        from benchmarks import huey_app

        self.sizes = sizes
        self._app = huey_app
        self._directory = directory
        self._workers: list[subprocess.Popen[bytes]] = []

    def start(self, slots_per_worker: int) -> None:
        self._stop_workers()
        # Nothing left over from an earlier start: queue, results, the ready counter.
        self._app.huey.flush()
        for i in range(self.sizes.workers):
            log = (self._directory / f"huey-{slots_per_worker}-{i}.log").open("ab")
            # --quiet logs warnings only, as Celery's workers here: at INFO a line per task.
            command = [
                sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.huey_app.huey",
                "--workers", str(slots_per_worker), "--worker-type", "process",
                "--quiet",
            ]  # fmt: skip
            self._workers.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        # Ready once every worker process has run the startup hook (Huey has no ping); then one
        # task makes the round trip.
        slots = self.sizes.workers * slots_per_worker
        deadline = time.monotonic() + 60
        while self._app.huey.storage.incr(self._app.READY_COUNTER, 0) < slots:
            exited = any(proc.poll() is not None for proc in self._workers)
            if exited or time.monotonic() > deadline:
                raise RuntimeError(
                    f"huey consumers did not start; see {self._directory}/huey-*.log"
                )
            time.sleep(0.05)
        self._app.noop(0).get(blocking=True, timeout=30)

    def _stop_workers(self) -> None:
        for proc in self._workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._workers.clear()

    def stop(self) -> None:
        self._stop_workers()
        # Leaves only the result-ready keys of results read before they were waited on: Redis
        # drops them after 60 s.
        self._app.huey.flush()

    def w1(self, record: Recorder) -> None:
        from huey.api import ResultGroup

        n = self.sizes.w1_tasks
        noop = self._app.noop
        started = time.perf_counter()
        # One call after the other, like Celery's: each enqueue is one LPUSH.
        results = ResultGroup([noop(i) for i in range(n)])
        submitted = time.perf_counter() - started
        values = results.get(blocking=True, timeout=600)
        elapsed = time.perf_counter() - started
        assert sorted(values) == list(range(n))
        record("W1", "submit rate", n / submitted, unit="tasks/s", higher_is_better=True)
        record("W1", "end to end", n / elapsed, unit="tasks/s", higher_is_better=True)

    def w1b(self, record: Recorder) -> None:
        """Huey has no batch submit: enqueuing a group is one LPUSH per task, as in W1."""

    def w2(self, record: Recorder) -> None:
        times: list[float] = []
        for i in range(self.sizes.w2_rounds):
            started = time.perf_counter()
            value = self._app.noop(i).get(blocking=True, timeout=30)
            times.append(time.perf_counter() - started)
            assert value == i
        record_latencies(record, "W2", times)

    def w3(self, record: Recorder) -> None:
        from huey import group

        n = self.sizes.w3_tasks
        sleep = self._app.sleep
        started = time.perf_counter()
        results = self._app.huey.enqueue(group([sleep.s(self.sizes.w3_sleep_s) for _ in range(n)]))
        results.get(blocking=True, timeout=600)
        record("W3", "wall", time.perf_counter() - started, unit="s", higher_is_better=False)

    def w4(self, record: Recorder) -> None:
        """Huey's chord: a group of no-ops, then `total` with the list of their results, enqueued
        by the consumer that finishes the last member."""
        from huey import group

        n = self.sizes.w4_tasks
        started = time.perf_counter()
        chord = group([self._app.noop.s(i) for i in range(n)]).then(self._app.total)
        value = self._app.huey.enqueue(chord).get(blocking=True, timeout=600)
        elapsed = time.perf_counter() - started
        assert value == n * (n - 1) // 2
        record("W4", "wall", elapsed, unit="s", higher_is_better=False)

    def dag(self, record: Recorder) -> None:
        """Huey has no general DAG (a task with several parents in several layers)."""

    def scale(self, record: Recorder) -> None:
        """Huey has no lease to time; its queue lives in Redis, not in a server process."""
