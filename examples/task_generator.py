"""Seed 004's task generator: submit a mix of task types to a server, wait, and report.

    python examples/task_generator.py [--server URL] [--count N] [--url URL] [--shell]

Generates N tasks of mixed types (sha256, echo, sleep; http GETs of --url when given; shell
commands with --shell, for workers started with --allow shell) plus one task that fails on
purpose, submits them one by one like independent clients would, waits for every one, and prints
a report: per type the count, how many succeeded and failed, and the mean run time; and per
worker how many tasks it ran. It checks every outcome (a digest is recomputed here, an echo must
come back unchanged, the deliberate failure must fail) and exits 0 only if all are as expected.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import mean
from typing import Any

from conveyor.client import Client
from conveyor.core.spec import TaskSpec

DEFAULT_URL = "http://127.0.0.1:8000"
FAILURE_MESSAGE = "deliberate failure from the task generator"


@dataclass
class Planned:
    kind: str
    spec: TaskSpec
    expect_success: bool
    check: Callable[[Any], bool] = lambda result: True
    """Is this result right? Only asked of tasks expected to succeed."""


def plan(count: int, rng: random.Random, url: str | None, shell: bool) -> list[Planned]:
    kinds = ["sha256", "echo", "sleep"] + (["http"] if url else []) + (["shell"] if shell else [])
    planned = [_make(kinds[i % len(kinds)], i, rng, url) for i in range(count)]
    failing = TaskSpec(handler="fail", args=[FAILURE_MESSAGE], name="deliberate-failure")
    planned.append(Planned("fail", failing, expect_success=False))
    rng.shuffle(planned)
    return planned


def _make(kind: str, i: int, rng: random.Random, url: str | None) -> Planned:
    name = f"gen-{kind}-{i}"
    if kind == "sha256":
        text = f"payload {i} {rng.random()}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        return Planned(
            kind, TaskSpec(handler="sha256", args=[text], name=name), True, digest.__eq__
        )
    if kind == "echo":
        value = {"i": i, "tags": rng.sample(["a", "b", "c", "d"], 2)}
        return Planned(kind, TaskSpec(handler="echo", args=[value], name=name), True, value.__eq__)
    if kind == "sleep":
        seconds = round(rng.uniform(0.05, 0.2), 3)
        return Planned(kind, TaskSpec(handler="sleep", args=[seconds], name=name), True)
    if kind == "http":
        spec = TaskSpec(handler="http", args=[url], kwargs={"timeout_s": 10}, name=name)
        return Planned(kind, spec, True, lambda result: 200 <= result["status"] < 300)
    token = f"generated-{i}"
    spec = TaskSpec(handler="shell", args=[["echo", token]], name=name)
    return Planned(kind, spec, True, lambda result: result["stdout"] == token + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("CONVEYOR_URL", DEFAULT_URL))
    parser.add_argument("--count", type=int, default=30, help="tasks besides the failing one")
    parser.add_argument("--url", default=None, help="also GET this URL with http tasks")
    parser.add_argument("--shell", action="store_true", help="also run shell tasks")
    parser.add_argument("--seed", type=int, default=None, help="random seed, to repeat a run")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait in all")
    options = parser.parse_args()
    planned = plan(options.count, random.Random(options.seed), options.url, options.shell)

    with Client(options.server) as client:
        ids = [client.submit(p.spec, timeout_s=60).id for p in planned]
        print(f"submitted {len(ids)} tasks to {options.server}; waiting for them to finish")
        for task_id in ids:
            client.result(task_id, timeout_s=options.timeout)
        details = [client.get(task_id) for task_id in ids]
        worker_names = {w.id: w.name for w in client.workers()}

    by_kind: dict[str, list[tuple[bool, float | None]]] = defaultdict(list)
    by_worker: dict[str, int] = defaultdict(int)
    surprises: list[str] = []
    for p, task in zip(planned, details, strict=True):
        succeeded = task.state.value == "succeeded"
        duration = (
            (task.finished_at - task.started_at).total_seconds()
            if task.started_at and task.finished_at
            else None
        )
        by_kind[p.kind].append((succeeded, duration))
        ran_on = task.attempt_log[-1].worker_id if task.attempt_log else None
        if ran_on:
            by_worker[worker_names.get(ran_on, ran_on)] += 1
        if succeeded != p.expect_success:
            surprises.append(f"{task.name}: {task.state.value} {task.error or ''}".strip())
        elif succeeded and not p.check(task.result):
            surprises.append(f"{task.name}: wrong result {task.result!r}")
        elif not succeeded and FAILURE_MESSAGE not in (task.error or ""):
            surprises.append(f"{task.name}: failed for another reason: {task.error}")

    print(f"\n{'type':<8} {'count':>5} {'succeeded':>9} {'failed':>6} {'mean ms':>8}")
    for kind in sorted(by_kind):
        outcomes = by_kind[kind]
        ok = sum(1 for succeeded, _ in outcomes if succeeded)
        times = [d for _, d in outcomes if d is not None]
        shown = f"{mean(times) * 1000:.1f}" if times else "-"
        print(f"{kind:<8} {len(outcomes):>5} {ok:>9} {len(outcomes) - ok:>6} {shown:>8}")
    print("\nworker   tasks")
    for name in sorted(by_worker):
        print(f"{name:<8} {by_worker[name]:>5}")
    if surprises:
        print(f"\n{len(surprises)} outcome(s) not as expected:")
        for line in surprises:
            print(f"  {line}")
        return 1
    print("\nall outcomes as expected (the deliberate failure failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
