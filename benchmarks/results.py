"""Figures: one JSON line per run as it is measured, medians, and the summary table."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO


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

    def table(self, systems: Sequence[str], baseline: str | None) -> str:
        """Markdown: one row per (workload, metric), one column per system, then the ratio of
        each Conveyor system to `baseline` (>1 means Conveyor is better)."""
        rows: dict[tuple[str, str], dict[str, Figure]] = {}
        for (system, workload, metric), figure in self.figures.items():
            rows.setdefault((workload, metric), {})[system] = figure
        ours = [s for s in systems if s != baseline]
        header = ["workload", "figure", *systems]
        if baseline is not None:
            header += [f"{s} vs {baseline}" for s in ours]
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for (workload, metric), by_system in rows.items():
            any_figure = next(iter(by_system.values()))
            cells = [workload, f"{metric} ({any_figure.unit})"]
            for system in systems:
                f = by_system.get(system)
                cells.append(_format(f.median) if f else "n/a")
            if baseline is not None:
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
