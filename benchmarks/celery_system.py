"""Celery on Redis: two `celery worker` processes (prefork pool, `--concurrency` set to the slots
per worker, its default prefetch), Redis as broker and result backend. A submit is one
`apply_async`; W1 and W3 wait with `ResultSet.get` (which Celery joins natively on Redis); W4 is
a chord."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.processes import WorkerProcesses
from benchmarks.results import redis_system_unavailable
from benchmarks.workloads import Sizes, Step

TIMEOUT_S = 600


def available(redis_url: str) -> str | None:
    """None when Celery can run here; otherwise why not."""
    return redis_system_unavailable("celery", redis_url)


class CelerySystem:
    name = "celery-redis"
    durability = "Redis without fsync (appendonly no, no snapshots): lost with the Redis process"
    wait_method = "ResultSet.get (native join)"
    returns_results = True
    fan_in_missing = None

    def __init__(self, directory: Path, sizes: Sizes, *, redis_url: str) -> None:
        # Read by celery_app at import, here and in the workers, which inherit the environment.
        os.environ["BENCH_REDIS_URL"] = redis_url
        from benchmarks import celery_app

        self.sizes = sizes
        self._app = celery_app
        self._env = {"BENCH_REDIS_URL": redis_url}
        self._queue = f"bench-{uuid.uuid4().hex[:8]}"
        self._workers = WorkerProcesses(directory, "celery")

    def start(self, slots_per_worker: int) -> None:
        commands = [
            [
                "-m", "celery", "-A", "benchmarks.celery_app", "worker",
                "--pool", "prefork", "--concurrency", str(slots_per_worker),
                "--queues", self._queue, "--hostname", f"bench{i}-{self._queue}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING",
            ]
            for i in range(self.sizes.workers)
        ]  # fmt: skip
        self._workers.start(commands, self._env)

        def both_answer() -> bool:
            replies = self._app.app.control.ping(timeout=0.5) or []
            mine = [r for r in replies if any(self._queue in host for host in r)]
            return len(mine) >= self.sizes.workers

        self._workers.wait_ready(both_answer)

    def stop(self) -> None:
        self._workers.stop()

    def submit_noop(self, x: int) -> object:
        return self._app.noop.apply_async((x,), queue=self._queue)

    def submit_sleep(self, seconds: float) -> object:
        return self._app.sleep.apply_async((seconds,), queue=self._queue)

    def wait_one(self, handle: object) -> object:
        return handle.get(timeout=TIMEOUT_S)  # type: ignore[attr-defined]

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        from celery.result import ResultSet

        return list(ResultSet(list(handles)).get(timeout=TIMEOUT_S))

    def fan_in(self, n: int) -> int:
        from celery import chord

        result = chord(
            (self._app.noop.s(i).set(queue=self._queue) for i in range(n)),
            self._app.total.s().set(queue=self._queue),
        ).apply_async()
        return int(result.get(timeout=TIMEOUT_S))

    def extra_steps(self) -> list[Step]:
        return []
