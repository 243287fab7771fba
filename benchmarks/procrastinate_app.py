"""The procrastinate application the benchmark compares with, on PostgreSQL.

Workers start as `procrastinate --app=benchmarks.procrastinate_app.app worker`; the database
URL (with the run's own schema on its search path) comes from BENCH_PROCRASTINATE_URL, set by
the benchmark for itself and the processes it starts. The tasks are plain functions, as
procrastinate's README writes them (it runs them in a thread of the worker's event loop).
"""

from __future__ import annotations

import os
import time

from procrastinate import App, PsycopgConnector

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get("BENCH_PROCRASTINATE_URL", "postgresql://127.0.0.1/test")
    )
)


@app.task(name="bench.noop")
def noop(x: int) -> int:
    return x  # procrastinate keeps no results: the benchmark waits for the job's status


@app.task(name="bench.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
