"""What limits cost a lease: 1,000 limits defined and 100,000 tasks held back by a full one,
against the same lease with no limit anywhere.

    python -m benchmarks.limits_bench                 # SQLite in a temp dir, full sizes
    python -m benchmarks.limits_bench --quick         # smaller sizes, for a smoke run
    python -m benchmarks.limits_bench --postgres postgresql://postgres@127.0.0.1:5432/test

Each measurement leases one task at a time and reports it (the lease alone is timed), from a
queue that also holds `ready` plain tasks:

- `no limits`: no limit defined, no task takes one (the baseline);
- `limits, plain task`: 1,000 limits defined, and `held` tasks of a full limit (one running,
  concurrency 1) waiting at a higher priority than the task leased, which takes no limit;
- `limits, limited task`: the same, and the task leased takes one of the 1,000 limits (a
  concurrency limit with room), so the lease counts and takes its slot;
- `limits, rate-limited`: the same with a rate limit with room (10,000 starts a second): a
  rate's count reads the starts in its window, here every lease of the last second;
- `limit set late`: the `held` tasks were submitted before their limit was set, so they are in
  the ready index when it is: setting it moves them to its line (what that costs, and the first
  lease after it, are printed apart).

Every case is prepared first; then the cases lease in turn, one lease each, so that a busy
moment of a shared machine weighs on all of them alike.

Prints one JSON line per measurement, then a table with each case's p50 against the baseline's
(the target: within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.engine_bench import postgres_factory, sqlite_factory
from conveyor.core.limiting import Limit
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome
from conveyor.engine import Engine, Report
from conveyor.store.base import Store

StoreFactory = Callable[[str], Store]
RESULTS: list[dict[str, object]] = []
LIMITS = 1_000


def emit(**figures: object) -> None:
    RESULTS.append(figures)
    print(json.dumps(figures), flush=True)


def submit(engine: Engine, spec: TaskSpec, count: int, batch: int = 10_000) -> None:
    for offset in range(0, count, batch):
        engine.submit_batch([spec] * min(batch, count - offset))


def define_limits(engine: Engine) -> None:
    """1,000 limits, half of them concurrency limits and half rate limits."""
    for i in range(LIMITS):
        if i % 2:
            engine.set_limit(Limit(name=f"l{i:04d}", rate=10_000, per_s=1.0))
        else:
            engine.set_limit(Limit(name=f"l{i:04d}", concurrency=5))


def fill_the_full_limit(engine: Engine, worker_id: str) -> None:
    """One task of `full` running (never reported), so that every other one is held back."""
    engine.submit(TaskSpec(handler="echo", limits=["full"], priority=100))
    (running,) = engine.lease(worker_id, 1)
    assert running is not None


def lease_one(engine: Engine, worker_id: str) -> float:
    """Lease one task (timed) and report it (not timed)."""
    started = time.perf_counter()
    leased = engine.lease(worker_id, 1)
    elapsed = time.perf_counter() - started
    assert len(leased) == 1, "a runnable task must be found behind the held ones"
    (a,) = leased
    engine.report(worker_id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=1)])
    return elapsed


@dataclass
class Case:
    name: str
    engine: Engine
    worker_id: str
    extra: dict[str, object] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)


def prepare(make: StoreFactory, name: str, held: int, ready: int, samples: int) -> Case:
    engine = Engine(make(re.sub(r"\W+", "_", name)))
    worker = engine.register_worker(
        name="bench", host="local", pid=os.getpid(), concurrency=samples + 10
    )
    case = Case(name, engine, worker.id, {"held": held, "ready": ready})
    leased = TaskSpec(handler="echo", args=[1], priority=0)
    if name == "no limits":
        submit(engine, TaskSpec(handler="echo", args=[1], priority=10), held)
    else:
        define_limits(engine)
        if name == "limit set late":
            # Submitted before `full` exists: nothing holds them back yet, so they sit in the
            # ready index; setting it moves them to its line.
            filler = TaskSpec(handler="echo", limits=["full"], priority=10)
            submit(engine, filler, held)
        started = time.perf_counter()
        engine.set_limit(Limit(name="full", concurrency=1))
        case.extra["set_limit_s"] = round(time.perf_counter() - started, 3)
        fill_the_full_limit(engine, worker.id)
        if name != "limit set late":
            submit(engine, TaskSpec(handler="echo", limits=["full"], priority=10), held)
        if name == "limits, limited task":
            leased = TaskSpec(handler="echo", args=[1], limits=["l0006"], priority=0)
        if name == "limits, rate-limited":
            leased = TaskSpec(handler="echo", args=[1], limits=["l0007"], priority=0)
    submit(engine, leased, ready + samples + 1)
    started = time.perf_counter()
    case.extra["first_lease_ms"] = round(lease_one(engine, worker.id) * 1000, 3)
    return case


def measure(cases: list[Case], samples: int) -> None:
    """One timed lease of each case in turn, `samples` times: a slower moment of a shared
    machine then weighs on every case alike."""
    for _ in range(samples):
        for case in cases:
            case.times.append(lease_one(case.engine, case.worker_id))
    for case in cases:
        times = sorted(case.times)
        emit(
            bench="lease_with_limits",
            case=case.name,
            p50_ms=round(statistics.median(times) * 1000, 3),
            p95_ms=round(times[int(len(times) * 0.95)] * 1000, 3),
            **case.extra,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument(
        "--postgres", metavar="URL", help="measure PostgreSQL at URL instead of SQLite"
    )
    parser.add_argument("--samples", type=int, default=300, help="leases timed per case")
    args = parser.parse_args()
    held = 10_000 if args.quick else 100_000
    ready = 1_000
    cases = (
        "no limits",
        "limits, plain task",
        "limits, limited task",
        "limits, rate-limited",
        "limit set late",
    )
    with tempfile.TemporaryDirectory(prefix="conveyor-limits-bench-") as directory:
        make = postgres_factory(args.postgres) if args.postgres else sqlite_factory(directory)
        emit(bench="store", store="postgres" if args.postgres else "sqlite")
        measure([prepare(make, name, held, ready, args.samples) for name in cases], args.samples)
    base = next(r for r in RESULTS if r.get("case") == "no limits")
    print()
    print(f"{'case':<22} {'p50 ms':>8} {'p95 ms':>8} {'vs no limits':>13}")
    for r in RESULTS:
        if r["bench"] != "lease_with_limits":
            continue
        ratio = float(str(r["p50_ms"])) / float(str(base["p50_ms"]))
        print(f"{r['case']:<22} {r['p50_ms']:>8} {r['p95_ms']:>8} {ratio:>12.2f}x")
        if r["case"] == "limit set late":
            print(
                f"{'':<22} (setting the limit took {r['set_limit_s']} s with {r['held']:,} "
                f"tasks to move; the lease after it took {r['first_lease_ms']} ms)"
            )


if __name__ == "__main__":
    main()
