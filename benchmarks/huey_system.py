"""Huey on Redis and on SQLite: two `huey_consumer` processes (process workers, `--workers` set
to the slots per worker). A submit is a call of the task function; W1 and W3 wait with a
`ResultGroup` (one blocking `get` per result: Huey has no bulk wait); W4 is a chord
(`group(...).then(total)`). See benchmarks/huey_app.py for the storage settings and why."""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.processes import WorkerProcesses
from benchmarks.results import redis_system_unavailable
from benchmarks.workloads import Sizes, Step

TIMEOUT_S = 600
# SQLite has no blocking read. The consumer polls an empty queue from --delay, growing by
# --backoff up to --max-delay (defaults 0.1 s, 1.15, 10 s: a worker idle for a while would
# answer 10 s late); Result.get polls from 50 ms up to max_delay. Both are set to poll every
# millisecond or so, the lowest latency Huey's options give, at the price of CPU.
SQLITE_CONSUMER_POLL = ("--delay", "0.001", "--max-delay", "0.005", "--backoff", "1.15")
SQLITE_RESULT_MAX_DELAY_S = 0.001


def available(redis_url: str) -> str | None:
    """None when Huey (on Redis) can run here; otherwise why not."""
    return redis_system_unavailable("huey", redis_url)


class HueySystem:
    returns_results = True
    wait_method = "ResultGroup.get (one blocking get per result)"
    fan_in_missing = None

    def __init__(self, directory: Path, sizes: Sizes, *, redis_url: str | None = None) -> None:
        """On Redis with `redis_url`, else on SQLite in `directory`."""
        self.storage = "redis" if redis_url else "sqlite"
        self.name = f"huey-{self.storage}"
        # Read by huey_app at import, here and in the consumers, which inherit the environment.
        # Huey keeps letters, digits and underscores of the name for its Redis keys.
        self._env = {
            "BENCH_HUEY_STORAGE": self.storage,
            "BENCH_HUEY_QUEUE": f"bench_{uuid.uuid4().hex[:8]}",
            "BENCH_HUEY_SQLITE": str(directory / "huey.db"),
            **({"BENCH_REDIS_URL": redis_url} if redis_url else {}),
        }
        os.environ.update(self._env)
        from benchmarks import huey_app

        # Both storages run in one benchmark process: import the app again for this one, and
        # keep its objects, since the next system's import replaces the module's attributes.
        huey_app = importlib.reload(huey_app)
        self._huey = huey_app.huey
        self._ready_counter = huey_app.READY_COUNTER
        self._noop, self._sleep, self._total = huey_app.noop, huey_app.sleep, huey_app.total

        self.durability = (
            "Redis without fsync (appendonly no, no snapshots): lost with the Redis process"
            if redis_url
            else "SQLite WAL, synchronous=FULL (SqliteHuey's default fsync=None): survives power loss"
        )
        self.sizes = sizes
        self._workers = WorkerProcesses(directory, self.name)
        self._get_options = {} if redis_url else {"max_delay": SQLITE_RESULT_MAX_DELAY_S}

    def start(self, slots_per_worker: int) -> None:
        self._workers.stop()
        # Nothing left over from an earlier start: queue, results, the ready counter.
        self._huey.flush()
        polling = SQLITE_CONSUMER_POLL if self.storage == "sqlite" else ()
        # --quiet logs warnings only, as Celery's workers here: at INFO a line per task.
        command = [
            "-m", "huey.bin.huey_consumer", "benchmarks.huey_app.huey",
            "--workers", str(slots_per_worker), "--worker-type", "process", "--quiet", *polling,
        ]  # fmt: skip
        self._workers.start([command] * self.sizes.workers, self._env)
        # Ready once every worker process has run the startup hook (Huey has no ping).
        slots = self.sizes.workers * slots_per_worker
        storage = self._huey.storage
        self._workers.wait_ready(lambda: storage.incr(self._ready_counter, 0) >= slots)

    def stop(self) -> None:
        self._workers.stop()
        self._huey.flush()

    def submit_noop(self, x: int) -> object:
        return self._noop(x)

    def submit_sleep(self, seconds: float) -> object:
        return self._sleep(seconds)

    def wait_one(self, handle: object) -> object:
        return handle.get(blocking=True, timeout=TIMEOUT_S, **self._get_options)  # type: ignore[attr-defined]

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        from huey.api import ResultGroup

        group = ResultGroup(list(handles))
        return list(group.get(blocking=True, timeout=TIMEOUT_S, **self._get_options))

    def fan_in(self, n: int) -> int:
        from huey import group

        chord = group([self._noop.s(i) for i in range(n)]).then(self._total)
        result = self._huey.enqueue(chord)
        return int(result.get(blocking=True, timeout=TIMEOUT_S, **self._get_options))

    def extra_steps(self) -> list[Step]:
        return []
