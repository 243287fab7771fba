"""The workloads, sized once and written once for every system.

Each system says how its user submits one task, waits for results and fans in (the `System`
protocol); the timing around those calls lives here only, so that every system is measured
by the same code: W1 submits one task per call and then waits for every result, W2 submits
and waits one task at a time, W3 is W1's shape with tasks that sleep, W4 is the system's own
fan-in primitive.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True)
class Sizes:
    w1_tasks: int = 10_000
    w2_rounds: int = 300
    w3_tasks: int = 1_000
    w3_sleep_s: float = 0.01
    w3_slots_per_worker: int = 16
    w4_tasks: int = 1_000
    scale_queued: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    scale_lease_samples: int = 200
    dag_layers: int = 100
    dag_width: int = 100
    dag_fan_in: int = 3
    workers: int = 2
    submit_concurrency: int = 32
    """Submits in flight in Conveyor's tuned W1 row (the coalescing AsyncClient)."""
    repeats: int = 3
    warmup: bool = True
    """Run each repeated workload once at a tenth of its size first, and discard it."""
    worker_args: tuple[str, ...] = ()
    """Extra `conveyor worker` arguments (e.g. `--prefetch 0`), to compare settings."""

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_tasks=1_000,
            w2_rounds=50,
            w3_tasks=200,
            w4_tasks=200,
            scale_queued=(1_000, 10_000),
            scale_lease_samples=50,
            dag_layers=10,
            dag_width=30,
            repeats=1,
            warmup=False,
        )

    def warmup_sizes(self) -> Sizes:
        """A tenth of each workload: enough to open connections, fill pools and import code."""
        return replace(
            self,
            w1_tasks=max(10, self.w1_tasks // 10),
            w2_rounds=max(5, self.w2_rounds // 10),
            w3_tasks=max(10, self.w3_tasks // 10),
            w4_tasks=max(10, self.w4_tasks // 10),
        )

    @property
    def ideal_w3_s(self) -> float:
        slots = self.workers * self.w3_slots_per_worker
        return self.w3_tasks * self.w3_sleep_s / slots


class Recorder(Protocol):
    def __call__(
        self, workload: str, metric: str, value: float, *, unit: str, higher_is_better: bool
    ) -> None: ...


Run = Callable[[Recorder, Sizes], None]


@dataclass(frozen=True)
class Step:
    """One workload as the runner schedules it."""

    workload: str
    """Its name for --only; a tuned variant is `W1/batch`, selected by `W1` too."""
    slots_per_worker: int
    """Worker slots it needs (0: none; the step starts what it needs)."""
    run: Run
    repeated: bool = True
    """Median of `repeats` runs after a warm-up; False: run once."""


class System(Protocol):
    """One scheduler set up for the benchmark (server or broker, worker processes), used the
    way its own documentation teaches."""

    name: str
    durability: str
    """What an acknowledged submit survives, in this set-up."""
    wait_method: str
    """How W1 and W3 wait for every result: a bulk wait where the SDK has one, else per task."""
    returns_results: bool
    """False where the system keeps no task results (the wait is for a finished status)."""
    fan_in_missing: str | None
    """Why W4 is n/a (the system has no fan-in primitive), or None."""

    def start(self, slots_per_worker: int) -> None:
        """(Re)start the worker processes with this many slots each (the server stays)."""
        ...

    def stop(self) -> None: ...

    def submit_noop(self, x: int) -> object:
        """One ordinary submit of `noop(x)` (which returns x); a handle to wait on."""
        ...

    def submit_sleep(self, seconds: float) -> object: ...

    def wait_one(self, handle: object) -> object:
        """Block until that task finished; its result (None without a result store)."""
        ...

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        """Block until every task finished; their results in order."""
        ...

    def fan_in(self, n: int) -> int:
        """Run n no-ops and a task that sums their results with the system's own primitive;
        that sum. Only called when `fan_in_missing` is None."""
        ...

    def extra_steps(self) -> list[Step]:
        """Tuned paths and system-only measurements (labelled rows); most systems have none."""
        ...


def _check(system: System, values: Sequence[object], expected: Sequence[object]) -> None:
    if system.returns_results and list(values) != list(expected):
        wrong = next(i for i, (a, b) in enumerate(zip(values, expected, strict=False)) if a != b)
        raise RuntimeError(f"{system.name}: result {wrong} is {values[wrong]!r}, not {expected[wrong]!r}")  # fmt: skip


def w1(system: System, record: Recorder, sizes: Sizes) -> None:
    """10,000 no-ops, one submit call each from one thread, then every result."""
    n = sizes.w1_tasks
    started = time.perf_counter()
    handles = [system.submit_noop(i) for i in range(n)]
    submitted_s = time.perf_counter() - started
    values = system.wait_all(handles)
    elapsed_s = time.perf_counter() - started
    _check(system, values, range(n))
    record("W1", "submit rate", n / submitted_s, unit="tasks/s", higher_is_better=True)
    record("W1", "end to end", n / elapsed_s, unit="tasks/s", higher_is_better=True)


def w2(system: System, record: Recorder, sizes: Sizes) -> None:
    """Sequential round trips: submit one task, wait for its result, then the next."""
    times: list[float] = []
    for i in range(sizes.w2_rounds):
        started = time.perf_counter()
        value = system.wait_one(system.submit_noop(i))
        times.append(time.perf_counter() - started)
        _check(system, [value], [i])
    record_latencies(record, "W2", "", times)


def w3(system: System, record: Recorder, sizes: Sizes) -> None:
    """Tasks sleeping 10 ms on 32 slots in all, one submit each, then every result."""
    started = time.perf_counter()
    handles = [system.submit_sleep(sizes.w3_sleep_s) for _ in range(sizes.w3_tasks)]
    system.wait_all(handles)
    elapsed_s = time.perf_counter() - started
    record("W3", "wall", elapsed_s, unit="s", higher_is_better=False)


def w4(system: System, record: Recorder, sizes: Sizes) -> None:
    """n no-ops and one task that sums their results, with the system's fan-in primitive."""
    n = sizes.w4_tasks
    started = time.perf_counter()
    total = system.fan_in(n)
    elapsed_s = time.perf_counter() - started
    if total != n * (n - 1) // 2:
        raise RuntimeError(f"{system.name}: W4 summed to {total!r}")
    record("W4", "wall", elapsed_s, unit="s", higher_is_better=False)


def steps(system: System, sizes: Sizes) -> list[Step]:
    """Every step for `system`, in the order they run: one slot per worker first (so the
    workers start once), then W3's slots, then what needs none."""

    def bound(workload: Callable[[System, Recorder, Sizes], None]) -> Run:
        return lambda record, s: workload(system, record, s)

    common = [Step("W1", 1, bound(w1)), Step("W2", 1, bound(w2))]
    if system.fan_in_missing is None:
        common.append(Step("W4", 1, bound(w4)))
    common.append(Step("W3", sizes.w3_slots_per_worker, bound(w3)))
    everything = common + system.extra_steps()
    order = {1: 0, sizes.w3_slots_per_worker: 1, 0: 2}
    return sorted(everything, key=lambda step: order.get(step.slots_per_worker, 1))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def record_latencies(record: Recorder, workload: str, how: str, seconds: list[float]) -> None:
    """p50 (the median), p95 and p99 of round-trip times, in milliseconds."""
    ordered = sorted(seconds)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = statistics.median(ordered) if q == 0.5 else percentile(ordered, q)
        metric = f"latency {name}{how}"
        record(workload, metric, value * 1000, unit="ms", higher_is_better=False)
