"""Chaos under load: a workload of chains, retries and timeouts, run while workers and the server
are killed with SIGKILL, then checked with the ledgers. Shared by tests/chaos and scripts/chaos.py.

The workload is planned up front, so each task's final state is known before it runs: a chain of
`chain_length` steps, where a step is plain, fails its first execution (and succeeds on retry),
always fails (and its descendants fail with `dependency_failed`), or sleeps past its timeout.

While a submitter thread submits the chains in batches (with idempotency keys, retrying each
batch until the server acknowledges it, and logging it in a SubmitLedger), the main thread kills
a random worker's process group every `kill_every_s` and restarts it at once, and kills the
server `server_kills` times, spread over the run, restarting it on the same port and database.
At the end the ledgers are checked and every task's final state compared with its plan.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.errors import ConveyorError
from conveyor.ledger import (
    LedgerReport,
    SubmitLedger,
    TaskRecord,
    check,
    fetch_tasks,
    read_executions,
    read_submits,
)
from conveyor.testing import Cluster

JOBS = "tests.helpers.chaos_jobs"
LIVE = ("pending", "queued", "running")


@dataclass(frozen=True)
class ChaosConfig:
    tasks: int = 2000
    chain_length: int = 5
    workers: int = 4
    concurrency: int = 2
    prefetch: int = 1
    lease_s: float = 2.0
    kill_every_s: float = 2.0
    server_kills: int = 2
    server_down_s: float = 0.5
    batch_tasks: int = 100
    """Tasks per submitted batch (whole chains)."""
    submit_every_s: float = 0.5
    flaky_share: float = 0.08
    doomed_share: float = 0.01
    timeout_share: float = 0.01
    step_sleep_s: float = 0.1
    """A plain step sleeps up to this long (uniformly drawn)."""
    long_share: float = 0.03
    long_sleep_s: float = 2.0
    """Some steps run this long: long enough to be running when the server goes down."""
    deadline_s: float = 300.0
    seed: int = 20261122
    db: str | None = None
    """A SQLite path or PostgreSQL URL; default a SQLite file in the run's directory."""


@dataclass(frozen=True)
class Expected:
    state: str
    reason: str | None = None
    retries: int = field(default=0, compare=False)
    """Retries the design spends at most: a kill must never spend one."""


@dataclass
class ChaosResult:
    config: ChaosConfig
    report: LedgerReport
    tasks: dict[str, TaskRecord]
    expected: dict[str, Expected]  # by idempotency key
    worker_kills: int = 0
    server_kills: int = 0
    duration_s: float = 0.0
    submit_retries: int = 0
    not_as_designed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.not_as_designed

    def figures(self) -> dict[str, object]:
        r = self.report
        return {
            "store": "postgresql" if (self.config.db or "").startswith("postgres") else "sqlite",
            "tasks": r.figures.get("submitted", 0),
            "duration_s": round(self.duration_s, 1),
            "worker_kills": self.worker_kills,
            "server_kills": self.server_kills,
            "submit_retries": self.submit_retries,
            "executions": r.figures.get("executions", 0),
            "executions_cut_off": r.figures.get("executions_cut_off", 0),
            "attempts_lost": r.figures.get("attempts_lost", 0),
            "attempts_expired": r.figures.get("attempts_expired", 0),
            "overlapping_executions": r.figures.get("overlapping_executions", 0),
            "final_states": dict(sorted(r.final_states.items())),
            "lost": len(r.lost),
            "unexpected": len(r.unexpected),
            "recorded_twice": len(r.recorded_twice),
            "early_starts": len(r.early_starts),
            "unaccounted_executions": len(r.unaccounted_executions),
            "misrecorded": len(r.misrecorded),
            "not_as_designed": len(self.not_as_designed),
        }


def plan(config: ChaosConfig, markers: Path) -> tuple[list[list[TaskSpec]], dict[str, Expected]]:
    """The batches to submit, and each task's expected final state by key."""
    rng = random.Random(config.seed)
    chains = max(1, config.tasks // config.chain_length)
    per_batch = max(1, config.batch_tasks // config.chain_length)
    expected: dict[str, Expected] = {}
    batches: list[list[TaskSpec]] = []
    batch: list[TaskSpec] = []
    for c in range(chains):
        broken: Expected | None = None
        for i in range(config.chain_length):
            name = f"c{c}-{i}"
            key = f"chaos-{config.seed}-{name}"
            upstream = {"$result": f"c{c}-{i - 1}"} if i else None
            roll = rng.random()
            sleep_s = round(
                config.long_sleep_s
                if rng.random() < config.long_share
                else rng.uniform(0, config.step_sleep_s),
                3,
            )
            spec: dict[str, object] = {
                "name": name,
                "key": key,
                "depends_on": [f"c{c}-{i - 1}"] if i else [],
                "retry": {"backoff_s": 0.05, "backoff_max_s": 0.2},
            }
            if roll < config.timeout_share:
                spec |= {"handler": f"{JOBS}:oversleep", "args": [name, 5.0, upstream]}
                spec |= {"timeout_s": 0.5}
                outcome = Expected("timed_out")
            elif roll < config.timeout_share + config.doomed_share:
                spec |= {"handler": f"{JOBS}:doomed", "args": [name, upstream], "max_retries": 1}
                outcome = Expected("failed", "retries_exhausted", retries=1)
            elif roll < config.timeout_share + config.doomed_share + config.flaky_share:
                args = [str(markers), name, upstream, sleep_s]
                spec |= {"handler": f"{JOBS}:flaky", "args": args, "max_retries": 2}
                outcome = Expected("succeeded", retries=1)
            else:
                spec |= {"handler": f"{JOBS}:step", "args": [name, upstream, sleep_s]}
                outcome = Expected("succeeded")
            expected[key] = broken or outcome
            if broken is None and outcome.state != "succeeded":
                broken = Expected("failed", "dependency_failed")
            batch.append(TaskSpec.model_validate(spec))
        if len(batch) >= per_batch * config.chain_length:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches, expected


class _Submitter(threading.Thread):
    """Submits every batch, each until acknowledged, and logs what the server acknowledged."""

    def __init__(self, url: str, batches: list[list[TaskSpec]], ledger: SubmitLedger,
                 every_s: float) -> None:  # fmt: skip
        super().__init__(name="chaos-submitter", daemon=True)
        self.url = url
        self.batches = batches
        self.ledger = ledger
        self.every_s = every_s
        self.acknowledged = 0
        self.retries = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with self.ledger, Client(self.url, timeout_s=10) as client:
                for batch in self.batches:
                    self._submit(client, batch)
                    if self.stop.wait(self.every_s):
                        return
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _submit(self, client: Client, batch: list[TaskSpec]) -> None:
        while not self.stop.is_set():
            try:
                tasks = client.submit_batch(batch)
            except (ConveyorError, httpx.HTTPError):
                # The server is down or was killed mid-call: the batch may or may not be stored.
                # Its keys make the next try return the stored tasks instead of new ones.
                self.retries += 1
                self.stop.wait(0.2)
                continue
            self.ledger.record_all(tasks)
            self.acknowledged += len(tasks)
            return


def _live_count(url: str) -> int | None:
    try:
        counts = httpx.get(f"{url}/api/v1/status", timeout=5).json()["counts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return sum(int(counts.get(state, 0)) for state in LIVE)


def run_chaos(
    directory: Path,
    config: ChaosConfig,
    *,
    cwd: Path,
    say: Callable[[str], None] = lambda line: None,
) -> ChaosResult:
    """Run the workload under chaos in `directory`; the caller decides what to assert."""
    markers, ledger_dir = directory / "markers", directory / "ledger"
    markers.mkdir()
    ledger_dir.mkdir()
    batches, expected = plan(config, markers)
    total = sum(len(b) for b in batches)
    rng = random.Random(config.seed + 1)
    cluster = Cluster(directory, db=config.db, lease_s=config.lease_s, cwd=cwd)
    worker_args = [
        "--ledger", str(ledger_dir), "--prefetch", str(config.prefetch), "--grace-s", "1",
    ]  # fmt: skip
    names = [f"chaos-w{i}" for i in range(config.workers)]

    def start_worker(name: str) -> None:
        cluster.start_worker(name, concurrency=config.concurrency, allow_modules=("tests",),
                             extra_args=worker_args, wait=False)  # fmt: skip

    result = ChaosResult(config, LedgerReport(), {}, expected)
    started = time.monotonic()
    submitter: _Submitter | None = None
    try:
        url = cluster.start_server()
        for name in names:
            start_worker(name)
        submitter = _Submitter(url, batches, SubmitLedger(directory / "submits.jsonl"),
                               config.submit_every_s)  # fmt: skip
        submitter.start()
        next_kill = time.monotonic() + config.kill_every_s
        deadline = started + config.deadline_s
        live: int | None = total
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(
                    f"chaos run not finished after {config.deadline_s}s: {live} task(s) live, "
                    f"{submitter.acknowledged}/{total} acknowledged"
                )
            if submitter.error is not None:
                raise submitter.error
            live = _live_count(url)
            done = submitter.acknowledged - (live or 0) if live is not None else 0
            progress = (submitter.acknowledged + max(done, 0)) / (2 * total)
            if result.server_kills < config.server_kills and progress >= (
                (result.server_kills + 1) / (config.server_kills + 1)
            ):
                say(f"killing the server ({progress:.0%} through)")
                cluster.kill_server()
                result.server_kills += 1
                time.sleep(config.server_down_s)  # down a moment: the workers must notice
                cluster.start_server(0)
            if now >= next_kill:
                victim = rng.choice(names)
                cluster.kill(cluster.workers[victim])
                result.worker_kills += 1
                start_worker(victim)
                next_kill = now + config.kill_every_s
            if not submitter.is_alive() and submitter.acknowledged == total and live == 0:
                break
            time.sleep(0.05)
        result.duration_s = time.monotonic() - started
        result.submit_retries = submitter.retries
        say(f"all {total} tasks finished after {result.duration_s:.1f}s; checking the ledgers")
        # Let the last executions' lines land: every worker is drained before reading them.
        for name in names:
            cluster.stop_worker(name)
        submits = read_submits(directory / "submits.jsonl")
        result.tasks = fetch_tasks(url, task_ids=[s.task_id for s in submits])
        result.report = check(submits, read_executions(ledger_dir), result.tasks, config.lease_s)
        by_key = {t.key: t for t in result.tasks.values() if t.key}
        for key, want in expected.items():
            task = by_key.get(key)
            got = Expected(task.state, task.reason, task.retries_used) if task else None
            if got != want:
                result.not_as_designed.append(f"{key}: expected {want}, got {got}")
            elif task is not None and task.retries_used > want.retries:
                result.not_as_designed.append(
                    f"{key}: spent {task.retries_used} retries, its design only {want.retries}"
                )
        return result
    finally:
        if submitter is not None:
            submitter.stop.set()
        cluster.stop()
