"""The Huey application the benchmark compares with, on Redis or on SQLite.

Consumers start as `huey_consumer benchmarks.huey_app.huey`. The benchmark sets, for itself and
the processes it starts: BENCH_HUEY_STORAGE (`redis` or `sqlite`), BENCH_REDIS_URL or
BENCH_HUEY_SQLITE (the database file), and BENCH_HUEY_QUEUE (so that a run sees only its own
queue).

Settings, the fastest a Huey user would pick:
- Redis: `blocking=True` (Huey's default there): consumers wait on BRPOP instead of polling;
  `notify_result=True`: a blocking `Result.get` waits on a BLPOP that the consumer signals,
  instead of polling the result hash from 50 ms on, which would set a floor under W2.
- SQLite (`SqliteHuey`): its defaults, WAL and `fsync=None`, which leaves SQLite's own
  `synchronous` (FULL in WAL mode in this Python's SQLite): a commit is on disk when it returns.
  SQLite has no blocking read, so the consumers and `Result.get` poll (see huey_system.py for
  the intervals chosen).
- Huey's own serializer (pickle). A JSON one is not a drop-in: Huey's task message is a
  namedtuple holding datetimes and nested messages, which JSON turns into bare lists that the
  consumer can no longer read. The values the tasks take and return are JSON-compatible anyway.
"""

from __future__ import annotations

import os
import time

from huey import Huey, RedisHuey, SqliteHuey

READY_COUNTER = "bench.ready"


def _make() -> Huey:
    queue = os.environ.get("BENCH_HUEY_QUEUE", "bench")
    if os.environ.get("BENCH_HUEY_STORAGE", "redis") == "sqlite":
        return SqliteHuey(queue, filename=os.environ.get("BENCH_HUEY_SQLITE", "huey.db"))
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    return RedisHuey(queue, url=url, blocking=True, notify_result=True)


huey = _make()


@huey.on_startup()
def count_ready() -> None:
    """Runs once in each worker process: the benchmark waits until every slot has counted."""
    huey.storage.incr(READY_COUNTER)


@huey.task(name="bench.noop")
def noop(x: int) -> int:
    return x


@huey.task(name="bench.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@huey.task(name="bench.total")
def total(values: list[int]) -> int:
    return sum(values)
