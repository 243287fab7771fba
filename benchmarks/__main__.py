"""Measure Conveyor like for like with its peers, in one run on one machine, and print one JSON
line per run, then three tables: one row per system (with its durability), the labelled extra
rows, and the ratios the targets are stated in.

    python -m benchmarks --postgres postgresql://postgres@127.0.0.1:5432/test
    python -m benchmarks --quick                          # small sizes, one run each
    python -m benchmarks --systems sqlite,huey-redis --only W1,W2

Every system is used as its own README teaches: W1 10,000 no-ops, one ordinary submit call each
from one thread, then every result; W2 300 sequential submit-then-wait round trips; W3 1,000
tasks sleeping 10 ms on 32 slots in all, one submit each; W4 1,000 no-ops and a task summing
their results, with the system's own fan-in primitive. Two worker processes with one slot each
(16 each for W3). Medians of 3 runs, after a warm-up at a tenth of the size that is discarded.
Tuned paths (Conveyor's coalescing AsyncClient, submit_batch, Client.run), the DAG and Scale
are extra rows, labelled. Systems: Conveyor on SQLite (--durability normal, and full), Conveyor
on PostgreSQL, Huey on Redis and on SQLite, Celery on Redis, procrastinate and pgqueuer on
PostgreSQL.
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
from dataclasses import replace
from pathlib import Path

from benchmarks import celery_system, huey_system, postgres
from benchmarks.results import Results, SystemInfo
from benchmarks.workloads import Sizes, System, steps
from conveyor.testing import interrupt_on_sigterm

# Ordered so that the comparisons the targets make run minutes apart, not half an hour.
SYSTEMS = (
    "sqlite", "huey-redis", "huey-sqlite", "celery",
    "postgres", "procrastinate", "pgqueuer", "sqlite-full",
)  # fmt: skip
WORKLOADS = ("W1", "W2", "W3", "W4", "DAG", "Scale")

Factory = Callable[[], System]


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


def factories(
    wanted: list[str], directory: Path, sizes: Sizes, redis_url: str, postgres_url: str | None
) -> list[tuple[str, Factory]]:
    """The systems to run, each built only when its turn comes (its set-up creates schemas and
    files); a system that cannot run here is skipped, saying why."""
    from benchmarks.conveyor_system import ConveyorSystem
    from benchmarks.pgqueuer_system import PgqueuerSystem
    from benchmarks.procrastinate_system import ProcrastinateSystem

    no_postgres = postgres.unavailable(postgres_url)
    pg = postgres_url or ""
    makers: dict[str, tuple[str | None, Factory]] = {
        "sqlite": (None, lambda: ConveyorSystem(directory, sizes)),
        "sqlite-full": (
            None,
            lambda: ConveyorSystem(directory, sizes, sqlite_durability="full", tuned=False),
        ),
        "postgres": (no_postgres, lambda: ConveyorSystem(directory, sizes, postgres=pg)),
        "huey-redis": (
            huey_system.available(redis_url),
            lambda: huey_system.HueySystem(directory, sizes, redis_url=redis_url),
        ),
        "huey-sqlite": (
            huey_system.available(redis_url),  # the same package; Redis is not used
            lambda: huey_system.HueySystem(directory, sizes),
        ),
        "celery": (
            celery_system.available(redis_url),
            lambda: celery_system.CelerySystem(directory, sizes, redis_url=redis_url),
        ),
        "procrastinate": (no_postgres, lambda: ProcrastinateSystem(directory, sizes, postgres=pg)),
        "pgqueuer": (no_postgres, lambda: PgqueuerSystem(directory, sizes, postgres=pg)),
    }
    chosen = []
    for name in SYSTEMS:
        if name not in wanted:
            continue
        why_not, make = makers[name]
        if why_not is None:
            chosen.append((name, make))
        else:
            print(f"# {name} skipped: {why_not}", file=sys.stderr)
    return chosen


def run_system(system: System, sizes: Sizes, only: set[str], results: Results) -> list[str]:
    """Run the selected workloads; return those that failed twice and were skipped."""

    def record(workload: str, metric: str, value: float, **kw: object) -> None:
        results.record(system.name, workload, metric, round(value, 4), **kw)  # type: ignore[arg-type]

    def discard(*args: object, **kw: object) -> None:
        pass

    missing = {"W4": system.fan_in_missing} if system.fan_in_missing is not None else {}
    results.add_system(SystemInfo(system.name, system.durability, system.wait_method, missing))
    slots = None
    skipped: list[str] = []
    try:
        for step in steps(system, sizes):
            if step.workload not in only and step.workload.split("/")[0] not in only:
                continue
            if step.slots_per_worker and step.slots_per_worker != slots:
                try:
                    system.start(step.slots_per_worker)
                    slots = step.slots_per_worker
                except Exception as exc:  # its workers could not start: the step is not measured
                    print(f"# {system.name} {step.workload} not run: {exc!r}", file=sys.stderr)
                    skipped.append(f"{system.name} {step.workload}")
                    slots = None
                    continue
            repeats = sizes.repeats if step.repeated else 1
            failures = done = 0
            warm = step.repeated and sizes.warmup
            while done < repeats and failures < 2:
                try:
                    if warm:  # opens connections and fills pools; its figures are dropped
                        step.run(discard, sizes.warmup_sizes())  # type: ignore[arg-type]
                        warm = False
                    step.run(record, sizes)  # type: ignore[arg-type]
                    done += 1
                except Exception as exc:  # a run that fails is run again, once; then skipped
                    failures += 1
                    print(f"# {system.name} {step.workload} failed: {exc!r}", file=sys.stderr)
                    time.sleep(2)
                    if step.slots_per_worker and failures < 2:
                        try:  # on fresh workers and connections: a fault may have broken them
                            system.start(step.slots_per_worker)
                        except Exception as again:
                            print(f"# {system.name} did not restart: {again!r}", file=sys.stderr)
                            break
            if done < repeats:
                skipped.append(f"{system.name} {step.workload}")
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
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL for Conveyor and peers")
    parser.add_argument("--redis", metavar="URL", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated among {', '.join(SYSTEMS)} [default: all that can run here]",
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated among {', '.join(WORKLOADS)} (W1 includes its tuned rows)",
    )
    parser.add_argument("--repeats", type=int, help="runs per workload (median reported)")
    parser.add_argument(
        "--worker-args", default="", help="extra `conveyor worker` arguments, space-separated"
    )
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSONL",
        help="measure nothing: print the tables of these runs' JSON lines (--quick: their sizes)",
    )
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    if args.worker_args:
        sizes = replace(sizes, worker_args=tuple(args.worker_args.split()))
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    if args.report:
        results = Results(sys.stdout)
        for path in args.report:
            results.load(path.read_text(encoding="utf-8").splitlines())
        print_tables(results, sizes)
        return 0
    # A SIGTERM (`timeout`, a CI job cancelled) unwinds like Ctrl-C, so that every system stops
    # its server and workers instead of leaving them running, orphaned.
    interrupt_on_sigterm()
    started = datetime.datetime.now(datetime.UTC)
    jsonl = args.out.open("a", encoding="utf-8") if args.out else None
    results = Results(sys.stdout, jsonl)
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        chosen = factories(args.systems.split(","), Path(tmp), sizes, args.redis, args.postgres)
        for name, make in chosen:
            print(f"# {name}: starting at {datetime.datetime.now(datetime.UTC):%H:%M:%S} UTC", file=sys.stderr)  # fmt: skip
            skipped += run_system(make(), sizes, set(args.only.split(",")), results)
    if jsonl is not None:
        jsonl.close()
    warmup = ", after a discarded warm-up" if sizes.warmup else ""
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC, {machine()}; medians of {sizes.repeats} run(s){warmup}")
    print_tables(results, sizes)
    if skipped:
        print(f"# failed, not measured in full: {', '.join(skipped)}", file=sys.stderr)
        return 1
    return 0


def print_tables(results: Results, sizes: Sizes) -> None:
    print()
    print(results.headline_table())
    if notes := results.notes():
        print()
        print(notes)
    if extra := results.extra_table():
        print()
        print("Extra rows (tuned paths, labelled; Conveyor's own DAG and Scale):")
        print()
        print(extra)
    print()
    print("Targets, as ratios within this run (information, not a test):")
    print()
    print(results.targets_table(sizes.ideal_w3_s))


if __name__ == "__main__":
    sys.exit(main())
