"""Run every workload of issue 8 on Conveyor (SQLite, and PostgreSQL with --postgres) and on
Celery and Huey, each with Redis, when they are here; print one JSON line per run, then a summary
table with each Conveyor system's ratio to Celery and to Huey.

    python -m benchmarks                                  # full sizes, medians of 3
    python -m benchmarks --quick                          # small sizes, one run each
    python -m benchmarks --postgres postgresql://127.0.0.1/test --out bench.jsonl
    python -m benchmarks --systems sqlite --only W1,W2    # a part of it
    python -m benchmarks --quick --systems huey,celery    # the systems compared with

W1: 10,000 no-ops, one submit call each (up to --submit-concurrency in flight), then wait for
all; W1b: the same through one batch call; W2: 300 sequential submit-and-wait round trips;
W3: 1,000 tasks sleeping 10 ms on 32 slots in total; W4: 1,000 no-ops and one task summing their
results; DAG: 10,000 tasks in 100 layers, each depending on 3 of the layer before; Scale: lease
time and server memory with 1,000 / 100,000 / 1,000,000 tasks queued. Two worker processes with
one slot each, except W3 (16 each). Celery runs neither DAG nor Scale; Huey runs neither W1b (it
has no batch submit), DAG nor Scale.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import celery_system, huey_system
from benchmarks.conveyor_system import ConveyorSystem
from benchmarks.results import Results
from benchmarks.workloads import Recorder, Sizes, System

WORKLOADS = ("W1", "W1b", "W2", "W4", "DAG", "W3", "Scale")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"
    )


def postgres_unavailable(url: str | None) -> str | None:
    if not url:
        return "pass --postgres URL"
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"cannot connect to {url} ({exc})"
    return None


def run_system(system: System, sizes: Sizes, only: set[str], results: Results) -> list[str]:
    """Run the workloads in `only`; return those that failed twice and were skipped."""

    def recorder(workload: str, metric: str, value: float, **kw: object) -> None:
        results.record(system.name, workload, metric, round(value, 4), **kw)  # type: ignore[arg-type]

    record: Recorder = recorder  # type: ignore[assignment]
    steps: list[tuple[str, int, Callable[[Recorder], None], int]] = [
        ("W1", 1, system.w1, sizes.repeats),
        ("W1b", 1, system.w1b, sizes.repeats),
        ("W2", 1, system.w2, sizes.repeats),
        ("W4", 1, system.w4, sizes.repeats),
        ("DAG", 1, system.dag, 1),
        ("W3", sizes.w3_slots_per_worker, system.w3, sizes.repeats),
        ("Scale", 0, system.scale, 1),
    ]
    slots = None
    skipped: list[str] = []
    try:
        for workload, want_slots, run, repeats in steps:
            if workload not in only:
                continue
            if want_slots and want_slots != slots:
                system.start(want_slots)
                slots = want_slots
            failures = 0
            done = 0
            while done < repeats and failures < 2:
                try:
                    run(record)
                    done += 1
                except Exception as exc:  # a run that fails is run again, once; then skipped
                    failures += 1
                    print(f"# {system.name} {workload} failed: {exc!r}", file=sys.stderr)
                    time.sleep(2)
            if done < repeats:
                skipped.append(f"{system.name} {workload}")
    finally:
        system.stop()
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--postgres", metavar="URL", help="also run Conveyor on PostgreSQL")
    parser.add_argument("--redis", metavar="URL", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--systems",
        default="sqlite,postgres,celery,huey",
        help="comma-separated among sqlite, postgres, celery, huey [default: all available]",
    )
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--repeats", type=int, help="runs per workload (median reported)")
    parser.add_argument("--submit-concurrency", type=int, help="W1 submit calls in flight")
    parser.add_argument(
        "--worker-args", default="", help="extra `conveyor worker` arguments, space-separated"
    )
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    overrides: dict[str, object] = {}
    if args.worker_args:
        overrides["worker_args"] = tuple(args.worker_args.split())
    if args.repeats:
        overrides["repeats"] = args.repeats
    if args.submit_concurrency:
        overrides["submit_concurrency"] = args.submit_concurrency
    if overrides:
        sizes = Sizes(**{**sizes.__dict__, **overrides})
    wanted = set(args.systems.split(","))
    only = set(args.only.split(","))
    started = datetime.datetime.now(datetime.UTC)
    jsonl = args.out.open("a", encoding="utf-8") if args.out else None
    results = Results(sys.stdout, jsonl)
    names: list[str] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        directory = Path(tmp)
        systems: list[System] = []
        if "sqlite" in wanted:
            systems.append(ConveyorSystem("conveyor-sqlite", directory, sizes, postgres=None))
        if "postgres" in wanted:
            why_not = postgres_unavailable(args.postgres)
            if why_not is not None:
                print(f"# conveyor-postgres skipped: {why_not}", file=sys.stderr)
            else:
                systems.append(
                    ConveyorSystem("conveyor-postgres", directory, sizes, postgres=args.postgres)
                )
        redis_systems = (
            ("celery", celery_system.available, celery_system.CelerySystem),
            ("huey", huey_system.available, huey_system.HueySystem),
        )
        for name, available, make in redis_systems:
            if name not in wanted:
                continue
            why_not = available(args.redis)
            if why_not is None:
                systems.append(make(directory, sizes, redis_url=args.redis))
            else:
                print(f"# {name} skipped: {why_not}", file=sys.stderr)
        for system in systems:
            names.append(system.name)
            skipped += run_system(system, sizes, only, results)
    if jsonl is not None:
        jsonl.close()
    baselines = [name for name in ("celery", "huey") if name in names]
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC, {machine()}; medians of {sizes.repeats} run(s)")
    print(results.table(names, baselines))
    if skipped:
        print(f"# failed, not measured in full: {', '.join(skipped)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
