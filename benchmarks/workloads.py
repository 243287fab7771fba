"""The workloads of issue 8, sized once for every system, and the shape every system implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sizes:
    w1_tasks: int = 10_000
    """W1 and W1b: no-op tasks."""
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
    """Submit calls in flight at once in W1 (one task per call, from one client process)."""
    repeats: int = 3
    worker_args: tuple[str, ...] = ()
    """Extra `conveyor worker` arguments (e.g. `--prefetch 0`), to compare settings."""

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_tasks=2_000,
            w2_rounds=100,
            w3_tasks=300,
            w4_tasks=300,
            scale_queued=(1_000, 20_000),
            scale_lease_samples=100,
            dag_layers=20,
            dag_width=50,
            repeats=1,
        )

    @property
    def ideal_w3_s(self) -> float:
        slots = self.workers * self.w3_slots_per_worker
        return self.w3_tasks * self.w3_sleep_s / slots


class Recorder(Protocol):
    def __call__(
        self, workload: str, metric: str, value: float, *, unit: str, higher_is_better: bool
    ) -> None: ...


class System(Protocol):
    """One scheduler set up for the benchmark (servers, brokers, workers), measured in place."""

    name: str

    def start(self, slots_per_worker: int) -> None:
        """(Re)start the workers with this many slots each (the server or broker stays)."""
        ...

    def w1(self, record: Recorder) -> None: ...

    def w1b(self, record: Recorder) -> None: ...

    def w2(self, record: Recorder) -> None: ...

    def w3(self, record: Recorder) -> None: ...

    def w4(self, record: Recorder) -> None: ...

    def dag(self, record: Recorder) -> None: ...

    def scale(self, record: Recorder) -> None: ...

    def stop(self) -> None: ...
