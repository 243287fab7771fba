"""The chaos workload, planned up front so that each task's ending is known before it runs.

Two shapes of submission, as users submit: **chains** of `chain_length` steps, sent in batches
(one call for many tasks, `depends_on` naming steps of the batch), and **single tasks**, sent
one `Client.submit` call each from several threads. A step is plain, fails its first execution
(and succeeds on retry), always fails (its descendants then fail with `dependency_failed`),
sleeps past its timeout, or is **poison**: it prints or raises text no store can hold, floods
its output, or returns a result no store can keep. Every task has an idempotency key, so that a
submit retried after a lost answer returns the task already stored.

`not_as_designed()` compares a task's final record with its plan, poison included: how each
poison must end is written next to its kind in `POISONS`.
"""

from __future__ import annotations

import random
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from conveyor.core.spec import TaskSpec
from conveyor.ledger import AttemptRecord, TaskRecord
from tests.helpers.chaos_jobs import GARBLED_END, GARBLED_START, HUGE_OUTPUT_END

JOBS = "tests.helpers.chaos_jobs"
LIMIT = "chaos"
"""The limit that a share of the tasks take, one of LIMIT_KEYS keys each: at most
LIMIT_CONCURRENCY running at once and LIMIT_RATE started in any LIMIT_PER_S seconds, per key."""
LIMIT_CONCURRENCY = 2
LIMIT_RATE = 4
LIMIT_PER_S = 1.0
LIMIT_KEYS = 3
OUTPUT_TAIL_CHARS = 4096
"""What a worker keeps of a task's stdout and stderr by default (WorkerConfig.output_tail_chars)."""


@dataclass(frozen=True)
class Expected:
    state: str
    reason: str | None = None
    retries: int = field(default=0, compare=False)
    """Retries the design spends at most: a fault must never spend one."""
    poison: str | None = field(default=None, compare=False)
    """The kind of poison the task is (POISONS), whose ending is checked too."""


@dataclass(frozen=True)
class Poison:
    """A kind of poison task: its handler and arguments, and how it must end."""

    handler: str
    """A function of chaos_jobs."""
    args: Callable[[str], list[object]]
    ending: Expected
    check: Callable[[TaskRecord], str | None]
    """Given the final record, what is wrong with it (None: as designed)."""


def _has_unstorable_text(text: str) -> bool:
    return "\x00" in text or any(unicodedata.category(c) == "Cs" for c in text)


def _last_attempt_output(task: TaskRecord) -> tuple[str, str]:
    attempts = sorted(task.attempts, key=lambda a: a.number)
    return (attempts[-1].stdout_tail, attempts[-1].stderr_tail) if attempts else ("", "")


def _garbled_output_cleaned(task: TaskRecord) -> str | None:
    stdout, stderr = _last_attempt_output(task)
    if _has_unstorable_text(stdout) or _has_unstorable_text(stderr):
        return "its stored output still holds NUL or lone surrogates"
    if GARBLED_START not in stdout or GARBLED_END not in stdout:
        return f"its output was not kept around the bad text: {stdout[:200]!r}"
    return None


def _error_says(*words: str) -> Callable[[TaskRecord], str | None]:
    def check(task: TaskRecord) -> str | None:
        error = task.error or ""
        if _has_unstorable_text(error):
            return "its stored error still holds NUL or lone surrogates"
        if not all(w.lower() in error.lower() for w in words):
            return f"its error should say {' '.join(words)!r}: {error[:200]!r}"
        return None

    return check


def _huge_output_capped(task: TaskRecord) -> str | None:
    stdout, _ = _last_attempt_output(task)
    if len(stdout) > OUTPUT_TAIL_CHARS:
        return f"{len(stdout)} characters of output stored, more than the {OUTPUT_TAIL_CHARS} cap"
    if HUGE_OUTPUT_END not in stdout[-200:]:
        return f"the end of its output was not kept: {stdout[-200:]!r}"
    return None


POISONS: dict[str, Poison] = {
    # Output and errors are the task's own business: cleaned (NUL and lone surrogates become
    # U+FFFD), never a reason to fail the task or its worker.
    "garbled_output": Poison(
        "garbled_output", lambda name: [name], Expected("succeeded"), _garbled_output_cleaned
    ),
    "nul_error": Poison(
        "nul_error", lambda name: [name], Expected("failed"), _error_says("fails with a NUL")
    ),
    # Megabytes of output: only the tail is kept.
    "huge_output": Poison(
        "huge_output", lambda name: [name, 3.0], Expected("succeeded"), _huge_output_capped
    ),
    # A result no store can keep ends the task failed, saying why.
    "nan_result": Poison(
        "unstorable_result", lambda name: [name, "nan"], Expected("failed"),
        _error_says("result", "JSON"),
    ),
    "surrogate_result": Poison(
        "unstorable_result", lambda name: [name, "surrogate"], Expected("failed"),
        _error_says("result"),
    ),
    "too_large_result": Poison(
        "unstorable_result", lambda name: [name, "too_large"], Expected("failed"),
        _error_says("result"),
    ),
}  # fmt: skip
KNOWN_WORKER_KILLERS: frozenset[str] = frozenset()
"""Poisons that stop the worker that runs them today (each with its xfail test in
tests/chaos/test_found_by_the_matrix.py): left out of the matrix by default, or every worker
would die in turn. None at present."""
DEFAULT_POISONS = tuple(kind for kind in POISONS if kind not in KNOWN_WORKER_KILLERS)


@dataclass(frozen=True)
class Shares:
    """What share of the steps is of each kind; the rest are plain."""

    flaky: float = 0.08
    doomed: float = 0.01
    timeout: float = 0.01
    poison: float = 0.0
    long: float = 0.03
    """Steps that run `long_sleep_s`: long enough to be running when a fault strikes."""
    limited: float = 0.3
    """Steps of any kind that also take a key of the LIMIT (at most LIMIT_CONCURRENCY running)."""


@dataclass
class Workload:
    batches: list[list[TaskSpec]]
    """Chains, whole, to submit a batch at a time."""
    singles: list[TaskSpec]
    """Independent tasks, to submit one call each."""
    expected: dict[str, Expected]
    """Each task's designed ending, by idempotency key."""
    poisons: dict[str, int] = field(default_factory=dict)
    """How many tasks of each poison kind were planned."""
    limited: dict[str, str] = field(default_factory=dict)
    """The LIMIT key each limited task takes, by the task's idempotency key."""

    @property
    def total(self) -> int:
        return sum(len(b) for b in self.batches) + len(self.singles)


@dataclass(frozen=True)
class Plan:
    chain_tasks: int
    chain_length: int
    single_tasks: int
    batch_tasks: int
    shares: Shares
    poisons: tuple[str, ...]
    step_sleep_s: float
    long_sleep_s: float
    seed: int


def plan(p: Plan, markers: Path) -> Workload:
    """The batches and single tasks to submit, and each task's designed ending by key."""
    rng = random.Random(p.seed)
    workload = Workload([], [], {})
    chains = p.chain_tasks // p.chain_length if p.chain_tasks else 0
    per_batch = max(1, p.batch_tasks // p.chain_length)
    batch: list[TaskSpec] = []
    for c in range(chains):
        broken: Expected | None = None
        for i in range(p.chain_length):
            name = f"c{c}-{i}"
            upstream = {"$result": f"c{c}-{i - 1}"} if i else None
            spec, outcome = _step(p, rng, markers, name, upstream, workload)
            spec |= {"depends_on": [f"c{c}-{i - 1}"] if i else []}
            workload.expected[str(spec["key"])] = broken or outcome
            if broken is None and outcome.state != "succeeded":
                broken = Expected("failed", "dependency_failed")
            batch.append(TaskSpec.model_validate(spec))
        if len(batch) >= per_batch * p.chain_length:
            workload.batches.append(batch)
            batch = []
    if batch:
        workload.batches.append(batch)
    for s in range(p.single_tasks):
        spec, outcome = _step(p, rng, markers, f"s{s}", None, workload)
        workload.expected[str(spec["key"])] = outcome
        workload.singles.append(TaskSpec.model_validate(spec))
    return workload


def _step(
    p: Plan,
    rng: random.Random,
    markers: Path,
    name: str,
    upstream: object,
    workload: Workload,
) -> tuple[dict[str, object], Expected]:
    spec, outcome = _step_of_a_kind(p, rng, markers, name, upstream, workload)
    if rng.random() < p.shares.limited:
        limit_key = f"{LIMIT}:k{rng.randrange(LIMIT_KEYS)}"
        spec["limits"] = [limit_key]
        workload.limited[str(spec["key"])] = limit_key
    return spec, outcome


def _step_of_a_kind(
    p: Plan,
    rng: random.Random,
    markers: Path,
    name: str,
    upstream: object,
    workload: Workload,
) -> tuple[dict[str, object], Expected]:
    roll = rng.random()
    sleep_s = round(
        p.long_sleep_s if rng.random() < p.shares.long else rng.uniform(0, p.step_sleep_s), 3
    )
    spec: dict[str, object] = {
        "name": name,
        "key": f"chaos-{p.seed}-{name}",
        "retry": {"backoff_s": 0.05, "backoff_max_s": 0.2},
    }
    s = p.shares
    if roll < s.timeout:
        spec |= {"handler": f"{JOBS}:oversleep", "args": [name, 5.0, upstream], "timeout_s": 0.5}
        return spec, Expected("timed_out")
    roll -= s.timeout
    if roll < s.doomed:
        spec |= {"handler": f"{JOBS}:doomed", "args": [name, upstream], "max_retries": 1}
        return spec, Expected("failed", "retries_exhausted", retries=1)
    roll -= s.doomed
    if roll < s.flaky:
        args = [str(markers), name, upstream, sleep_s]
        spec |= {"handler": f"{JOBS}:flaky", "args": args, "max_retries": 2}
        return spec, Expected("succeeded", retries=1)
    roll -= s.flaky
    if roll < s.poison and p.poisons:
        kind = rng.choice(p.poisons)
        spec |= _poison_fields(kind, name, upstream)
        workload.poisons[kind] = workload.poisons.get(kind, 0) + 1
        return spec, poison_ending(kind)
    spec |= {"handler": f"{JOBS}:step", "args": [name, upstream, sleep_s]}
    return spec, Expected("succeeded")


def _poison_fields(kind: str, name: str, upstream: object) -> dict[str, object]:
    poison = POISONS[kind]
    return {"handler": f"{JOBS}:{poison.handler}", "args": [*poison.args(name), upstream]}


def poison_spec(kind: str, name: str) -> TaskSpec:
    """A task of poison `kind` on its own."""
    return TaskSpec.model_validate({"name": name, **_poison_fields(kind, name, None)})


def poison_ending(kind: str) -> Expected:
    """How a task of poison `kind` must end, with its check."""
    want = POISONS[kind].ending
    return Expected(want.state, want.reason, want.retries, poison=kind)


def not_as_designed(key: str, task: TaskRecord | None, want: Expected) -> str | None:
    """What is wrong with how the task ended, compared with its plan; None if nothing."""
    got = Expected(task.state, task.reason, task.retries_used) if task else None
    if got != want:
        return f"{key}: expected {want}, got {got}" + (
            f" ({task.error[:200]!r})" if task and task.error else ""
        )
    assert task is not None
    if task.retries_used > want.retries:
        return f"{key}: spent {task.retries_used} retries, its design only {want.retries}"
    if want.poison is not None and (wrong := POISONS[want.poison].check(task)):
        return f"{key} ({want.poison}): {wrong}"
    return None


def over_the_limit(
    tasks_by_key: Mapping[str, TaskRecord], limited: Mapping[str, str], concurrency: int
) -> list[str]:
    """Each moment when more attempts of one limit key were running than the limit allows, from
    the attempts the server recorded (a slot is taken by the lease that starts an attempt and
    freed by whatever ends it), naming those attempts; and each limited attempt that never
    ended."""
    findings: list[str] = []
    changes: dict[str, list[tuple[datetime, int, str, AttemptRecord]]] = defaultdict(list)
    for task_key, limit_key in limited.items():
        task = tasks_by_key.get(task_key)
        for attempt in task.attempts if task is not None else ():
            if attempt.finished_at is None:
                findings.append(f"{limit_key}: attempt {attempt.number} of {task_key} never ended")
                continue
            changes[limit_key] += [
                (attempt.started_at, 1, task_key, attempt),
                (attempt.finished_at, -1, task_key, attempt),
            ]
    for limit_key, moments in changes.items():
        running: dict[tuple[str, int], AttemptRecord] = {}
        # At the same instant an end comes first: a slot freed and taken again is no overlap.
        for at, step, task_key, attempt in sorted(moments, key=lambda m: (m[0], m[1])):
            if step < 0:
                running.pop((task_key, attempt.number), None)
                continue
            running[task_key, attempt.number] = attempt
            if len(running) > concurrency:
                held = "; ".join(
                    f"{k}#{n} {a.started_at.time()}-{a.finished_at and a.finished_at.time()} "
                    f"{a.outcome} on {a.worker_id}"
                    for (k, n), a in running.items()
                )
                findings.append(f"{limit_key}: {len(running)} running at {at.isoformat()}: {held}")
    return findings


def over_the_rate(
    tasks_by_key: Mapping[str, TaskRecord], limited: Mapping[str, str], rate: int, per_s: float
) -> list[str]:
    """Each attempt that started when `rate` attempts of its limit key had already started in
    the `per_s` seconds before it (the server counts the starts after `now - per_s`), from the
    attempts the server recorded, naming them."""
    starts: dict[str, list[tuple[datetime, str, int]]] = defaultdict(list)
    for task_key, limit_key in limited.items():
        task = tasks_by_key.get(task_key)
        for attempt in task.attempts if task is not None else ():
            starts[limit_key].append((attempt.started_at, task_key, attempt.number))
    findings: list[str] = []
    window = timedelta(seconds=per_s)
    for limit_key, moments in starts.items():
        moments.sort()
        first = 0  # the earliest start still inside the window that ends at moments[i]
        for i, (at, task_key, number) in enumerate(moments):
            while moments[first][0] <= at - window:
                first += 1
            if i - first + 1 > rate:
                inside = ", ".join(f"{k}#{n} {t.time()}" for t, k, n in moments[first : i + 1])
                findings.append(
                    f"{limit_key}: {i - first + 1} started within {per_s:g} s up to "
                    f"{task_key}#{number}: {inside}"
                )
    return findings
