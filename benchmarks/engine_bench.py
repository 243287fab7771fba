"""Engine-level figures on a store: batch submit, lease+report cycles, lease time vs queue size.

    python benchmarks/engine_bench.py                 # SQLite in a temp dir, full sizes
    python benchmarks/engine_bench.py --quick         # smaller sizes, for a smoke run

Prints one JSON line per measurement, then a summary table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Engine, Report
from conveyor.store.base import Store
from conveyor.store.sqlite import SQLiteStore

StoreFactory = Callable[[str], Store]
RESULTS: list[dict[str, object]] = []


def emit(**figures: object) -> None:
    RESULTS.append(figures)
    print(json.dumps(figures), flush=True)


def sqlite_factory(directory: str) -> StoreFactory:
    def make(name: str) -> Store:
        return SQLiteStore(Path(directory) / f"{name}.db")

    return make


def postgres_factory(url: str) -> StoreFactory:
    """Each benchmark gets its own schema, dropped at exit."""
    import atexit
    import uuid

    import psycopg

    from conveyor.store.postgres import PostgresStore

    def make(name: str) -> Store:
        schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"

        def drop() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        atexit.register(drop)
        return PostgresStore(url, schema=schema)

    return make


def submit_in_batches(engine: Engine, total: int, batch: int = 10_000) -> float:
    spec = TaskSpec(handler="echo", args=[1])
    started = time.perf_counter()
    for offset in range(0, total, batch):
        engine.submit_batch([spec] * min(batch, total - offset))
    return time.perf_counter() - started


def bench_batch_submit(make: StoreFactory, total: int) -> None:
    engine = Engine(make("submit"))
    elapsed = submit_in_batches(engine, total)
    emit(
        bench="batch_submit",
        tasks=total,
        seconds=round(elapsed, 3),
        tasks_per_s=round(total / elapsed),
    )


def bench_cycles(make: StoreFactory, total: int, batch: int) -> None:
    engine = Engine(make(f"cycle{batch}"))
    submit_in_batches(engine, total)
    worker = engine.register_worker(name="bench", host="local", pid=os.getpid(), concurrency=batch)
    done = 0
    started = time.perf_counter()
    while done < total:
        leased = engine.lease(worker.id, batch)
        engine.report(
            worker.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=1) for a in leased]
        )
        done += len(leased)
    elapsed = time.perf_counter() - started
    emit(
        bench="lease_report_cycle",
        batch=batch,
        tasks=total,
        seconds=round(elapsed, 3),
        tasks_per_s=round(total / elapsed),
    )


def bench_calls(make: StoreFactory, samples: int) -> None:
    """Each call of a task's path, one task at a time (as W2 makes them): the median of
    `samples` of each, wall and CPU. `look` is a worker's first look, as the server makes it
    (`look_first`: a read before the lease), on an empty queue; `empty lease` the same without."""
    engine = Engine(make("calls"))
    worker = engine.register_worker(name="bench", host="local", pid=os.getpid(), concurrency=1)
    spec = TaskSpec(handler="echo", args=[1])
    leased: list[Any] = []

    def report() -> None:
        a = leased.pop()
        engine.report(worker.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=1)])

    calls: dict[str, Callable[[], object]] = {
        "empty lease": lambda: engine.lease(worker.id, 1),
        "look": lambda: engine.lease(worker.id, 1, look_first=True),
        "submit": lambda: engine.submit(spec),
        "lease": lambda: leased.extend(engine.lease(worker.id, 1)),
        "report": report,
    }
    for _ in range(20):  # warm: connections, prepared statements
        for call in calls.values():
            call()
    for name, call in calls.items():
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(samples):
            if name == "lease":
                engine.submit(spec)
            elif name == "report":
                engine.submit(spec)
                leased.extend(engine.lease(worker.id, 1))
            started, cpu_started = time.perf_counter(), time.process_time()
            call()
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        emit(
            bench="call",
            call=name,
            p50_ms=round(statistics.median(wall) * 1000, 3),
            cpu_ms=round(statistics.fmean(cpu) * 1000, 3),
        )


def bench_lease_latency(make: StoreFactory, queued: int, samples: int = 300) -> None:
    engine = Engine(make(f"latency{queued}"))
    submit_in_batches(engine, queued + samples)
    worker = engine.register_worker(name="bench", host="local", pid=os.getpid(), concurrency=1)
    times: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        (a,) = engine.lease(worker.id, 1)
        times.append(time.perf_counter() - started)
        engine.report(worker.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=1)])
    times.sort()
    emit(
        bench="lease_latency",
        queued=queued,
        p50_ms=round(statistics.median(times) * 1000, 3),
        p95_ms=round(times[int(len(times) * 0.95)] * 1000, 3),
    )


def bench_lease_with_history(make: StoreFactory, finished: int, samples: int = 300) -> None:
    """Lease latency with `finished` succeeded tasks in the table (written straight through the
    store, as years of history would be), and a few hundred queued."""
    store = make(f"history{finished}")
    engine = Engine(store)
    now = engine.clock.now()
    template = engine.submit(TaskSpec(handler="echo", args=[1]))
    engine.delete(template.id)
    for offset in range(0, finished, 50_000):
        rows = []
        for i in range(min(50_000, finished - offset)):
            task = copy.copy(template)
            task.id = f"h{offset + i:031d}"
            task.state = TaskState.SUCCEEDED
            task.finished_at = now
            rows.append(task)
        with store.transaction() as tx:
            tx.insert_tasks(rows)
    submit_in_batches(engine, samples)
    worker = engine.register_worker(name="bench", host="local", pid=os.getpid(), concurrency=1)
    times: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        (a,) = engine.lease(worker.id, 1)
        times.append(time.perf_counter() - started)
        engine.report(worker.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=1)])
    times.sort()
    emit(
        bench="lease_latency_with_history",
        finished=finished,
        p50_ms=round(statistics.median(times) * 1000, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument(
        "--postgres", metavar="URL", help="measure PostgreSQL at URL instead of SQLite"
    )
    args = parser.parse_args()
    submit_total = 10_000 if args.quick else 100_000
    cycle_total = 2_000 if args.quick else 20_000
    sizes = (1_000, 10_000) if args.quick else (1_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as directory:
        make = postgres_factory(args.postgres) if args.postgres else sqlite_factory(directory)
        emit(bench="store", store="postgres" if args.postgres else "sqlite")
        bench_calls(make, 200 if args.quick else 1_000)
        bench_batch_submit(make, submit_total)
        for batch in (1, 64):
            bench_cycles(make, cycle_total, batch)
        for queued in sizes:
            bench_lease_latency(make, queued)
        bench_lease_with_history(make, 10_000 if args.quick else 1_000_000)
    print()
    print(f"{'benchmark':<22} {'figure':>30}")
    for r in RESULTS:
        if r["bench"] == "lease_latency":
            figure = f"{r['queued']:>9,} queued: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms"
        elif r["bench"] == "lease_report_cycle":
            figure = f"batch {r['batch']:>3}: {r['tasks_per_s']:,} tasks/s"
        elif r["bench"] == "lease_latency_with_history":
            figure = f"{r['finished']:>9,} finished: p50 {r['p50_ms']} ms"
        elif r["bench"] == "call":
            figure = f"{r['call']}: p50 {r['p50_ms']} ms, CPU {r['cpu_ms']} ms"
        elif r["bench"] == "store":
            figure = str(r["store"])
        else:
            figure = f"{r['tasks']:,} tasks: {r['tasks_per_s']:,} tasks/s"
        print(f"{r['bench']:<22} {figure:>30}")


if __name__ == "__main__":
    main()
