"""The fault matrix: a workload run under every fault we know how to inject, then checked with
the ledgers. Shared by tests/chaos and scripts/chaos.py.

The workload (tests/helpers/workload.py) is planned up front, so each task's ending is known
before it runs: chains submitted in batches, and single tasks submitted one call each from
several threads, with steps that fail once, always fail, time out, or are poison. While it is
submitted and runs, the faults of `ChaosConfig.faults` strike (tests/helpers/faults.py), each
on its own schedule:

| fault | what happens |
| --- | --- |
| `worker_kills` | a random worker's process group gets SIGKILL every `kill_every_s`, and restarts |
| `server_kills` | the server gets SIGKILL `server_kills` times, restarting on its port and database |
| `db_terminations` | PostgreSQL: pg_terminate_backend() of the server's connections |
| `db_link` | PostgreSQL: its link to the server reset, partitioned or delayed (a TCP proxy) |
| `worker_link` | one worker's link to the server reset, partitioned or delayed |
| `client_link` | the submitters' link to the server reset, partitioned or delayed |
| `dead_while_running` | a busy worker partitioned until the server declares it dead |
| `deregistrations` | a busy worker deregistered by an admin (DELETE /api/v1/workers/{id}) |
| `disk_full` | SQLite: the file system under the database filled to the last byte for a while |

Faults stop once everything was submitted and either nothing is left to run or `fault_s` has
passed; then the run has `settle_s` to finish every task. The ledgers are then checked
(conveyor.ledger: lost, stuck, unexpected, recorded or executed twice, early starts), every
task's ending compared with its plan, and the attempts of the tasks that take the concurrency
limit checked against it: never more running at once than it allows, no slot taken at the end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conveyor.client import Client
from conveyor.ledger import (
    CATEGORIES,
    Finding,
    LedgerReport,
    SubmitLedger,
    TaskRecord,
    check,
    fetch_tasks,
    read_executions,
    read_submits,
)
from tests.helpers.chaos_rig import Rig
from tests.helpers.faults import Fault, Span
from tests.helpers.known_bugs import explained_by
from tests.helpers.submitters import BatchSubmitter, SharedLedger, Submitter, task_submitters
from tests.helpers.workload import (
    DEFAULT_POISONS,
    LIMIT,
    LIMIT_CONCURRENCY,
    LIMIT_PER_S,
    LIMIT_RATE,
    Expected,
    Plan,
    Shares,
    Workload,
    not_as_designed,
    over_the_limit,
    over_the_rate,
    plan,
)

LIVE = ("pending", "queued", "running")
FAULTS = (
    "worker_kills",
    "server_kills",
    "db_terminations",
    "db_link",
    "worker_link",
    "client_link",
    "dead_while_running",
    "deregistrations",
    "disk_full",
)
KILLS_ONLY = frozenset({"worker_kills", "server_kills"})


@dataclass(frozen=True)
class ChaosConfig:
    # ---- the workload
    tasks: int = 2000
    """Tasks in chains, submitted in batches."""
    single_tasks: int = 0
    """Independent tasks, submitted one `Client.submit` call each."""
    submit_threads: int = 4
    chain_length: int = 5
    batch_tasks: int = 100
    """Tasks per submitted batch (whole chains)."""
    submit_s: float = 10.0
    """Submissions are spread over this long."""
    shares: Shares = field(default_factory=Shares)
    poisons: tuple[str, ...] = DEFAULT_POISONS
    step_sleep_s: float = 0.1
    """A plain step sleeps up to this long (uniformly drawn)."""
    long_sleep_s: float = 2.0
    # ---- the cluster
    workers: int = 4
    concurrency: int = 2
    prefetch: int = 1
    lease_s: float = 2.0
    db: str | None = None
    """A SQLite path or PostgreSQL URL; default a SQLite file in the run's directory."""
    # ---- the faults
    faults: frozenset[str] = KILLS_ONLY
    kill_every_s: float = 2.0
    server_kills: int = 2
    server_down_s: float = 0.5
    db_terminate_every_s: Span = (0.3, 2.0)
    db_link_every_s: Span = (1.0, 4.0)
    db_fault_bursts: tuple[Span, Span] | None = ((5.0, 10.0), (3.0, 6.0))
    """The database's faults strike together in on windows (seconds drawn from the first span),
    with quiet windows (the second) between; None: all the time."""
    worker_link_every_s: Span = (0.5, 2.0)
    client_link_every_s: Span = (1.0, 3.0)
    dead_worker_every_s: Span = (6.0, 10.0)
    deregister_every_s: Span = (3.0, 6.0)
    disk_full_every_s: Span = (4.0, 8.0)
    disk_full_s: Span = (1.0, 3.0)
    disk_mb: int = 64
    """The tmpfs under a SQLite database that `disk_full` fills."""
    fault_s: float = 60.0
    """While work remains, faults go on until `submit_s + fault_s` after the start at most."""
    settle_s: float = 60.0
    """After the faults stop, how long every task has to end."""
    deadline_s: float = 300.0
    seed: int = 20261122

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")


@dataclass
class ChaosResult:
    config: ChaosConfig
    report: LedgerReport
    tasks: dict[str, TaskRecord]
    expected: dict[str, Expected]  # by idempotency key
    faults: Counter[str] = field(default_factory=Counter)
    """Faults injected, by kind, and what they hit."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Faults asked for that this run could not inject, with the reason."""
    poisons: dict[str, int] = field(default_factory=dict)
    injector_errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    settle_s: float = 0.0
    submit_retries: Counter[str] = field(default_factory=Counter)
    """Submit calls sent again, by the error that failed them (StoreBusyError is a 503)."""
    single_submits: int = 0
    not_as_designed: list[str] = field(default_factory=list)
    known_bugs: Counter[str] = field(default_factory=Counter)
    """Findings a known, unfixed bug explains (tests/helpers/known_bugs.py), by bug."""
    limited_tasks: int = 0
    over_the_limit: list[str] = field(default_factory=list)
    """Moments when a key of the LIMIT had more attempts running than it allows, and slots
    still taken once every task had ended."""

    def unexplained(self, category: str) -> list[Finding]:
        """The checker's findings in `category` that no known bug explains."""
        return [
            f
            for f in self.report.findings(category)
            if explained_by(category, f, self.tasks.get(f.task_id)) is None
        ]

    @property
    def ok(self) -> bool:
        return (
            not any(self.unexplained(c) for c in CATEGORIES)
            and not self.not_as_designed
            and not self.injector_errors
            and not self.over_the_limit
        )

    def figures(self) -> dict[str, object]:
        r = self.report
        return {
            "store": "postgresql" if (self.config.db or "").startswith("postgres") else "sqlite",
            "tasks": r.figures.get("submitted", 0),
            "single_submits": self.single_submits,
            "duration_s": round(self.duration_s, 1),
            "settle_s": round(self.settle_s, 1),
            "faults": dict(sorted(self.faults.items())),
            "skipped": dict(self.skipped),
            "poisons": dict(sorted(self.poisons.items())),
            "submit_retries": dict(sorted(self.submit_retries.items())),
            "executions": r.figures.get("executions", 0),
            "executions_cut_off": r.figures.get("executions_cut_off", 0),
            "attempts_lost": r.figures.get("attempts_lost", 0),
            "attempts_expired": r.figures.get("attempts_expired", 0),
            "attempts_of_dead_workers": r.figures.get("attempts_of_dead_workers", 0),
            "attempts_of_deregistered_workers": r.figures.get(
                "attempts_of_deregistered_workers", 0
            ),
            "overlapping_executions": r.figures.get("overlapping_executions", 0),
            "final_states": dict(sorted(r.final_states.items())),
            **{c: len(self.unexplained(c)) for c in CATEGORIES},
            "not_as_designed": len(self.not_as_designed),
            "limited_tasks": self.limited_tasks,
            "over_the_limit": len(self.over_the_limit),
            "injector_errors": len(self.injector_errors),
            "known_bugs": dict(sorted(self.known_bugs.items())),
        }


def _live_count(url: str) -> int | None:
    try:
        counts = httpx.get(f"{url}/api/v1/status", timeout=5).json()["counts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return sum(int(counts.get(state, 0)) for state in LIVE)


def workload_of(config: ChaosConfig, markers: Path) -> Workload:
    return plan(
        Plan(
            chain_tasks=config.tasks,
            chain_length=config.chain_length,
            single_tasks=config.single_tasks,
            batch_tasks=config.batch_tasks,
            shares=config.shares,
            poisons=config.poisons,
            step_sleep_s=config.step_sleep_s,
            long_sleep_s=config.long_sleep_s,
            seed=config.seed,
        ),
        markers,
    )


def run_chaos(
    directory: Path,
    config: ChaosConfig,
    *,
    cwd: Path,
    say: Callable[[str], None] = lambda line: None,
) -> ChaosResult:
    """Run the workload under the configured faults in `directory`; the caller decides what to
    assert. Worker and server logs stay in `directory`."""
    markers = directory / "markers"
    markers.mkdir()
    (directory / "ledger").mkdir()
    workload = workload_of(config, markers)
    result = ChaosResult(config, LedgerReport(), {}, workload.expected, poisons=workload.poisons)
    stop_submitting = threading.Event()
    injectors: list[Fault] = []
    ledger = SharedLedger(SubmitLedger(directory / "submits.jsonl"))
    with Rig.built(directory, config, cwd) as rig, contextlib.closing(ledger):
        result.skipped = dict(rig.skipped)
        for kind, why in rig.skipped.items():
            say(f"fault {kind} skipped: {why}")
        started = time.monotonic()
        try:
            rig.start()
            # Stored in the database: it holds across the server's restarts.
            with Client(rig.url) as client:
                client.set_limit(
                    LIMIT, concurrency=LIMIT_CONCURRENCY, rate=LIMIT_RATE, per_s=LIMIT_PER_S
                )
            client_url = rig.url_for(rig.client_links, "clients")
            submitters = [
                BatchSubmitter(client_url, workload.batches, ledger, spread_s=config.submit_s,
                               stop=stop_submitting),
                *task_submitters(config.submit_threads, client_url, workload.singles, ledger,
                                 spread_s=config.submit_s, stop=stop_submitting),
            ]  # fmt: skip
            injectors = rig.fault_injectors()
            say(f"{workload.total} tasks ({len(workload.singles)} one call each, from "
                f"{len(submitters) - 1} threads); faults: "
                f"{', '.join(sorted(rig.faults)) or 'none'}")  # fmt: skip
            for thread in [*submitters, *injectors]:
                thread.start()
            _wait_for_submits_and_work(rig.url, config, workload, submitters, started, say)
            say(f"stopping the faults after {time.monotonic() - started:.1f}s")
            _stop(injectors)
            stopped = time.monotonic()
            settled = _settle(rig.url, config.settle_s)
            result.settle_s = time.monotonic() - stopped
            say(
                f"{'settled' if settled else 'NOT settled'} {result.settle_s:.1f}s after the "
                "faults stopped; checking the ledgers"
            )
            result.duration_s = time.monotonic() - started
            for submitter in submitters:
                result.submit_retries.update(submitter.retries)
            result.single_submits = sum(s.acknowledged for s in submitters[1:])
            ledger.close()
            # Let the last executions' lines land: every worker is drained before reading them.
            for name in rig.worker_names:
                rig.cluster.stop_worker(name)
            _check(rig.url, directory, workload, result)
        finally:
            stop_submitting.set()
            _stop(injectors)
            for injector in injectors:
                result.faults.update(injector.counts)
                result.injector_errors += injector.errors
            bursts = {id(i.bursts): i.bursts for i in injectors if i.bursts is not None}
            if bursts:
                result.faults["db_fault_bursts"] = sum(b.windows for b in bursts.values())
    return result


def _check(url: str, directory: Path, workload: Workload, result: ChaosResult) -> None:
    """Hold the ledgers against the server's records, and each task against its plan."""
    submits = read_submits(directory / "submits.jsonl")
    result.tasks = fetch_tasks(url, task_ids=[s.task_id for s in submits])
    executions = read_executions(directory / "ledger")
    result.report = check(submits, executions, result.tasks, result.config.lease_s)
    for category in CATEGORIES:
        for finding in result.report.findings(category):
            bug = explained_by(category, finding, result.tasks.get(finding.task_id))
            if bug is not None:
                result.known_bugs[bug.id] += 1
    by_key = {t.key: t for t in result.tasks.values() if t.key}
    for key, want in workload.expected.items():
        if wrong := not_as_designed(key, by_key.get(key), want):
            result.not_as_designed.append(wrong)
    result.limited_tasks = len(workload.limited)
    result.over_the_limit = [
        *over_the_limit(by_key, workload.limited, LIMIT_CONCURRENCY),
        *over_the_rate(by_key, workload.limited, LIMIT_RATE, LIMIT_PER_S),
    ]
    with Client(url) as client:
        if taken := client.limit(LIMIT).running:
            result.over_the_limit.append(f"{LIMIT}: {taken} slots taken after every task ended")


def _wait_for_submits_and_work(
    url: str,
    config: ChaosConfig,
    workload: Workload,
    submitters: list[Submitter],
    started: float,
    say: Callable[[str], None],
) -> None:
    """Until every task was acknowledged and either none is live or `fault_s` has passed."""
    deadline = started + config.deadline_s
    last_said = started
    while True:
        now = time.monotonic()
        for s in submitters:
            if s.error is not None:
                raise s.error
        acknowledged = sum(s.acknowledged for s in submitters)
        submitting = any(s.is_alive() for s in submitters)
        live = _live_count(url)
        if now - last_said >= 10:
            say(f"{acknowledged}/{workload.total} acknowledged, {live} live")
            last_said = now
        all_in = not submitting and acknowledged == workload.total
        if all_in and (live == 0 or now - started >= config.submit_s + config.fault_s):
            return
        if now > deadline:
            raise AssertionError(
                f"chaos run not done after {config.deadline_s}s: {live} task(s) live, "
                f"{acknowledged}/{workload.total} acknowledged"
            )
        time.sleep(0.2)


def _stop(injectors: list[Fault]) -> None:
    for injector in injectors:
        injector.stop()
    for injector in injectors:
        injector.join()


def _settle(url: str, settle_s: float) -> bool:
    """Wait until no task is live; False if some still are after `settle_s`."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if _live_count(url) == 0:
            return True
        time.sleep(0.2)
    return False
