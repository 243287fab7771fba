"""The Huey application the benchmark compares with: Redis holds the queue and the results.

Consumers start as `python -m huey.bin.huey_consumer benchmarks.huey_app.huey`; the Redis URL
comes from BENCH_REDIS_URL and the queue name from BENCH_HUEY_QUEUE (both set by the benchmark
for the processes it starts, so that a run sees only its own queue).

Settings, the fastest a Huey user would pick:
- `blocking=True` (Huey's default on Redis): consumers wait on BRPOP instead of polling, so an
  idle worker picks a task up as soon as it is pushed.
- `notify_result=True`: a blocking `Result.get` waits on a BLPOP that the consumer signals,
  instead of polling the result hash from 50 ms on, which would set a floor under W2's latency.
- Huey's own serializer (pickle). A JSON one is not a drop-in: Huey's task message is a
  namedtuple holding datetimes and nested messages, which JSON turns into bare lists that the
  consumer can no longer read. The values the tasks take and return are JSON-compatible anyway.
"""

from __future__ import annotations

import os
import time

from huey import RedisHuey

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = os.environ.get("BENCH_HUEY_QUEUE", "bench")
READY_COUNTER = "bench.ready"

huey = RedisHuey(QUEUE, url=REDIS_URL, blocking=True, notify_result=True)


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
