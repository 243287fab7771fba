"""Celery on Redis under the same workloads: two `celery worker` processes (prefork pool, with
`--concurrency` set to the slots per worker), Redis as broker and result backend, default
prefetch. Submits are `apply_async` calls from the benchmark process, one per task."""

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
    """None when Celery can run here; otherwise why not."""
    return redis_system_unavailable("celery", redis_url)


class CelerySystem:
    name = "celery"

    def __init__(self, directory: Path, sizes: Sizes, *, redis_url: str) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url
        from benchmarks import celery_app

        self.sizes = sizes
        self._app = celery_app
        self._directory = directory
        self._redis_url = redis_url
        self._queue = f"bench-{uuid.uuid4().hex[:8]}"
        self._workers: list[subprocess.Popen[bytes]] = []

    def start(self, slots_per_worker: int) -> None:
        self._stop_workers()
        env = {**os.environ, "BENCH_REDIS_URL": self._redis_url}
        for i in range(self.sizes.workers):
            log = (self._directory / f"celery-{slots_per_worker}-{i}.log").open("ab")
            command = [
                sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
                "--pool", "prefork", "--concurrency", str(slots_per_worker),
                "--queues", self._queue, "--hostname", f"bench{i}-{self._queue}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING",
            ]  # fmt: skip
            self._workers.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        # Ready once both answer a ping; then one task each way warms the pools.
        deadline = time.monotonic() + 60
        while True:
            replies = self._app.app.control.ping(timeout=0.5) or []
            mine = [r for r in replies if any(self._queue in host for host in r)]
            if len(mine) >= self.sizes.workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("celery workers did not start; see celery-*.log")
        self._app.noop.apply_async((0,), queue=self._queue).get(timeout=30)

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

    def _submit(self, task: object, args: tuple[object, ...]) -> object:
        return task.apply_async(args, queue=self._queue)  # type: ignore[attr-defined]

    def w1(self, record: Recorder) -> None:
        from celery.result import ResultSet

        n = self.sizes.w1_tasks
        noop = self._app.noop
        started = time.perf_counter()
        # One call after the other: apply_async is a Redis write, well under a millisecond, and
        # Celery's producer is not meant to be shared between threads.
        results = [self._submit(noop, (i,)) for i in range(n)]
        submitted = time.perf_counter() - started
        values = ResultSet(results).join_native(timeout=600)
        elapsed = time.perf_counter() - started
        assert sorted(values) == list(range(n))
        record("W1", "submit rate", n / submitted, unit="tasks/s", higher_is_better=True)
        record("W1", "end to end", n / elapsed, unit="tasks/s", higher_is_better=True)

    def w1b(self, record: Recorder) -> None:
        """Celery's batch: one group, sent with one call."""
        from celery import group

        n = self.sizes.w1_tasks
        noop = self._app.noop
        started = time.perf_counter()
        result = group(noop.s(i) for i in range(n)).apply_async(queue=self._queue)
        submitted = time.perf_counter() - started
        values = result.join_native(timeout=600)
        elapsed = time.perf_counter() - started
        assert len(values) == n
        record("W1b", "batch submit", n / submitted, unit="tasks/s", higher_is_better=True)
        record("W1b", "end to end", n / elapsed, unit="tasks/s", higher_is_better=True)

    def w2(self, record: Recorder) -> None:
        times: list[float] = []
        for i in range(self.sizes.w2_rounds):
            started = time.perf_counter()
            value = self._submit(self._app.noop, (i,)).get(timeout=30)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - started)
            assert value == i
        record_latencies(record, "W2", times)

    def w3(self, record: Recorder) -> None:
        from celery import group

        n = self.sizes.w3_tasks
        sleep = self._app.sleep
        started = time.perf_counter()
        result = group(sleep.s(self.sizes.w3_sleep_s) for _ in range(n)).apply_async(
            queue=self._queue
        )
        result.join_native(timeout=600)
        record("W3", "wall", time.perf_counter() - started, unit="s", higher_is_better=False)

    def w4(self, record: Recorder) -> None:
        from celery import chord

        n = self.sizes.w4_tasks
        started = time.perf_counter()
        result = chord(
            (self._app.noop.s(i).set(queue=self._queue) for i in range(n)),
            self._app.total.s().set(queue=self._queue),
        ).apply_async()
        value = result.get(timeout=600)
        elapsed = time.perf_counter() - started
        assert value == n * (n - 1) // 2
        record("W4", "wall", elapsed, unit="s", higher_is_better=False)

    def dag(self, record: Recorder) -> None:
        """Celery has no general DAG (a task with several parents in several layers)."""

    def scale(self, record: Recorder) -> None:
        """Celery has no lease to time; its queue lives in Redis, not in a server process."""
