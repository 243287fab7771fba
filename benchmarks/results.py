"""Figures: one JSON line per run as it is measured, medians, and the tables printed at the end:
the headline (one row per system, with its durability), the labelled extra rows, and the ratios
the targets are stated in (printed, never asserted)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

HEADLINE = (
    ("W1", "submit rate", "W1 submit (tasks/s)"),
    ("W1", "end to end", "W1 end to end (tasks/s)"),
    ("W2", "latency p50", "W2 p50 (ms)"),
    ("W2", "latency p95", "W2 p95 (ms)"),
    ("W2", "latency p99", "W2 p99 (ms)"),
    ("W3", "wall", "W3 wall (s)"),
    ("W4", "wall", "W4 wall (s)"),
)


@dataclass
class Figure:
    """One workload's figure for one system, over its repeats."""

    unit: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass(frozen=True)
class SystemInfo:
    name: str
    durability: str
    wait_method: str
    missing: dict[str, str] = field(default_factory=dict)
    """Workloads it cannot run, and why."""


class Results:
    def __init__(self, out: TextIO, jsonl: TextIO | None = None) -> None:
        self._out = out
        self._jsonl = jsonl
        self.figures: dict[tuple[str, str, str], Figure] = {}
        self.systems: list[SystemInfo] = []
        self.missing: dict[tuple[str, str], str] = {}
        """(system, workload) -> why it has no figure."""

    def add_system(self, info: SystemInfo) -> None:
        """A system about to run; its JSON line makes the run's lines self-describing."""
        self.systems.append(info)
        for workload, why in info.missing.items():
            self.missing[(info.name, workload)] = why
        self._emit({"system": info.name, "durability": info.durability, "wait_method": info.wait_method, "missing": info.missing})  # fmt: skip

    def load(self, lines: Sequence[str]) -> None:
        """Add the systems and figures of JSON lines this class printed (of one or more runs)."""
        for line in lines:
            if not line.startswith("{"):
                continue
            item = json.loads(line)
            if "durability" in item:
                info = SystemInfo(item["system"], item["durability"], item["wait_method"], item["missing"])  # fmt: skip
                self.systems = [s for s in self.systems if s.name != info.name] + [info]
                self.missing.update({(info.name, w): why for w, why in info.missing.items()})
            else:
                if all(s.name != item["system"] for s in self.systems):  # a line of no system
                    self.systems.append(SystemInfo(item["system"], "not recorded", "not recorded"))
                key = (item["system"], item["workload"], item["metric"])
                higher = item["unit"] == "tasks/s"
                self.figures.setdefault(key, Figure(item["unit"], higher)).values.append(item["value"])  # fmt: skip

    def record(
        self,
        system: str,
        workload: str,
        metric: str,
        value: float,
        *,
        unit: str,
        higher_is_better: bool,
    ) -> None:
        figure = self.figures.setdefault((system, workload, metric), Figure(unit, higher_is_better))
        figure.values.append(value)
        self._emit(
            {"system": system, "workload": workload, "metric": metric, "value": value, "unit": unit}
        )

    def _emit(self, item: dict[str, object]) -> None:
        line = json.dumps(item)
        print(line, file=self._out, flush=True)
        if self._jsonl is not None:
            print(line, file=self._jsonl, flush=True)

    def median(self, system: str, workload: str, metric: str) -> float | None:
        figure = self.figures.get((system, workload, metric))
        return figure.median if figure and figure.values else None

    # ---- tables -----------------------------------------------------------------------------

    def headline_table(self) -> str:
        """One row per system: the like-for-like workloads, its durability and how it waits."""
        header = ["system", *(label for _, _, label in HEADLINE), "W1/W3 wait", "durability"]
        lines = [_row(header), _row(["---"] * len(header))]
        for info in self.systems:
            cells = [info.name]
            for workload, metric, _ in HEADLINE:
                value = self.median(info.name, workload, metric)
                if value is not None:
                    cells.append(_format(value))
                else:
                    cells.append("n/a" if (info.name, workload) in self.missing else "failed")
            lines.append(_row([*cells, info.wait_method, info.durability]))
        return "\n".join(lines)

    def extra_table(self) -> str:
        """Everything outside the headline: tuned paths (labelled), DAG, Scale."""
        headline = {(w, m) for w, m, _ in HEADLINE}
        lines = [_row(["system", "workload", "figure", "value"]), _row(["---"] * 4)]
        for (system, workload, metric), figure in self.figures.items():
            if (workload, metric) in headline or not figure.values:
                continue
            lines.append(_row([system, workload, f"{metric} ({figure.unit})", _format(figure.median)]))  # fmt: skip
        return "\n".join(lines) if len(lines) > 2 else ""

    def notes(self) -> str:
        return "\n".join(f"- {s} {w}: n/a, {why}" for (s, w), why in self.missing.items())

    def targets_table(self, ideal_w3_s: float) -> str:
        """The targets of DESIGN.md as ratios within this run; `met` is information only."""
        lines = [_row(["target", "ratio", "goal", "met"]), _row(["---"] * 4)]

        def add(what: str, ratio: float | None, goal: str, met: bool | None) -> None:
            shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
            lines.append(_row([what, shown, goal, "" if met is None else ("yes" if met else "no")]))

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        e2e = lambda system: self.median(system, "W1", "end to end")  # noqa: E731
        w1 = ratio(e2e("conveyor-sqlite"), e2e("huey-redis"))
        add("W1 end to end, Conveyor SQLite / Huey Redis", w1, ">= 1.5x", _at_least(w1, 1.5))
        for peer in ("huey-redis", "huey-sqlite"):
            w2 = ratio(
                self.median("conveyor-sqlite", "W2", "latency p50"),
                self.median(peer, "W2", "latency p50"),
            )
            add(f"W2 p50, Conveyor SQLite / {_title(peer)}", w2, "<= 1x", _at_most(w2, 1.0))
        w3 = ratio(self.median("conveyor-sqlite", "W3", "wall"), ideal_w3_s)
        add(f"W3 wall, Conveyor SQLite / ideal {ideal_w3_s:.4g} s", w3, "<= 1.1x", _at_most(w3, 1.1))  # fmt: skip
        peers = [
            (value, info.name)
            for info in self.systems
            if not info.name.startswith("conveyor")
            and (value := self.median(info.name, "W4", "wall")) is not None
        ]
        if peers:
            best, best_name = min(peers)
            w4 = ratio(self.median("conveyor-sqlite", "W4", "wall"), best)
            add(f"W4 wall, Conveyor SQLite / best peer ({_title(best_name)})", w4, "<= 0.67x", _at_most(w4, 0.67))  # fmt: skip
        for peer in ("procrastinate", "pgqueuer"):
            pg = ratio(e2e("conveyor-postgres"), e2e(peer))
            add(f"W1 end to end, Conveyor PostgreSQL / {_title(peer)}", pg, ">= 2x", _at_least(pg, 2.0))  # fmt: skip
        batch = self.median("conveyor-sqlite", "Scale", "batch submit (1,000 per call)")
        add("Scale batch submit, Conveyor SQLite / 20,000 tasks/s", ratio(batch, 20_000), ">= 1x", _at_least(ratio(batch, 20_000), 1.0))  # fmt: skip
        return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _title(system: str) -> str:
    return {
        "huey-redis": "Huey Redis",
        "huey-sqlite": "Huey SQLite",
        "celery-redis": "Celery Redis",
        "procrastinate": "procrastinate",
        "pgqueuer": "pgqueuer",
    }.get(system, system)


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _format(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


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
