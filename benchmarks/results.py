"""Figures: one JSON line per run as it is measured, medians, and the summary table."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from benchmarks.workloads import Recorder


@dataclass
class Figure:
    """One workload's figure for one system, over its repeats."""

    system: str
    workload: str
    metric: str
    unit: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


class Results:
    def __init__(self, out: TextIO, jsonl: TextIO | None = None) -> None:
        self._out = out
        self._jsonl = jsonl
        self.figures: dict[tuple[str, str, str], Figure] = {}

    def record(
        self,
        system: str,
        workload: str,
        metric: str,
        value: float,
        *,
        unit: str,
        higher_is_better: bool,
        **details: object,
    ) -> None:
        key = (system, workload, metric)
        figure = self.figures.setdefault(
            key, Figure(system, workload, metric, unit, higher_is_better)
        )
        figure.values.append(value)
        fields = {"system": system, "workload": workload, "metric": metric}
        line = json.dumps({**fields, "value": value, "unit": unit, **details})
        print(line, file=self._out, flush=True)
        if self._jsonl is not None:
            print(line, file=self._jsonl, flush=True)

    def table(self, systems: Sequence[str], baselines: Sequence[str] = ()) -> str:
        """Markdown: one row per (workload, metric), one column per system, then the ratio of
        each Conveyor system to each of `baselines` (>1 means Conveyor is better)."""
        rows: dict[tuple[str, str], dict[str, Figure]] = {}
        for (system, workload, metric), figure in self.figures.items():
            rows.setdefault((workload, metric), {})[system] = figure
        ours = [s for s in systems if s not in baselines]
        header = ["workload", "figure", *systems]
        header += [f"{s} vs {baseline}" for baseline in baselines for s in ours]
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for (workload, metric), by_system in rows.items():
            any_figure = next(iter(by_system.values()))
            cells = [workload, f"{metric} ({any_figure.unit})"]
            for system in systems:
                f = by_system.get(system)
                cells.append(_format(f.median) if f else "n/a")
            for baseline in baselines:
                base = by_system.get(baseline)
                for system in ours:
                    f = by_system.get(system)
                    if f is None or base is None or not base.median or not f.median:
                        cells.append("")
                        continue
                    ratio = (
                        f.median / base.median
                        if any_figure.higher_is_better
                        else base.median / f.median
                    )
                    cells.append(f"{ratio:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _format(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def record_latencies(record: Recorder, workload: str, seconds: list[float]) -> None:
    """p50 (the median), p95 and p99 of round-trip times, in milliseconds."""
    ordered = sorted(seconds)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = statistics.median(ordered) if q == 0.5 else percentile(ordered, q)
        record(workload, f"latency {name}", value * 1000, unit="ms", higher_is_better=False)


def redis_system_unavailable(module: str, redis_url: str) -> str | None:
    """None when `module` (a Redis-backed system) can run here; otherwise why not."""
    import importlib

    try:
        importlib.import_module(module)
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis at {redis_url} does not answer ({exc})"
    return None
