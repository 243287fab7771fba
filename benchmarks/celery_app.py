"""The Celery application the benchmark compares with: Redis as broker and result backend.

Workers start as `celery -A benchmarks.celery_app worker`; the broker URL comes from
BENCH_REDIS_URL (set by the benchmark for the processes it starts).
"""

from __future__ import annotations

import os
import time

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

app = Celery("conveyor_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop(x: int) -> int:
    return x


@app.task(name="bench.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="bench.total")
def total(values: list[int]) -> int:
    return sum(values)
