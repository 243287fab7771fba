"""The checker: holds the ledgers against the server's final records and names every violation.

Three sources, each kept by a different party: the clients' submit ledger (what was
acknowledged), the workers' execution ledgers (what really ran, and when), and the server's task
records with their attempt logs (what was recorded). The checker trusts none of them alone:

- **lost**: acknowledged, but missing from the database.
- **stuck**: acknowledged, but still pending, queued or running when the run is over (the
  caller decides when that is: after every fault has stopped and the run had time to settle).
- **unexpected**: in the database or executed, but never acknowledged to a client; or one
  idempotency key acknowledged as two different tasks.
- **recorded twice**: more than one attempt recorded `succeeded`, an attempt leased after the
  one whose result was recorded, or a recorded result that is not the one the recorded attempt
  produced (its digest in the execution ledger).
- **executed twice**: one lease (task and fencing token) started more than once, by one
  worker process or by several.
- **early starts**: an execution (in a worker's ledger) that started while another attempt's
  lease was still valid; or, in the attempt log itself, an attempt granted while the previous one
  had not ended, or an attempt expired before its lease ran out. Attempt n's lease is valid from
  its start until it ended, except that an attempt the server ended on its own (`lost`, "lease
  expired" or "worker stopped heartbeating") stays valid until its lease expiry as heartbeats
  last extended it, and an attempt with no end stays valid until that expiry.
- **unaccounted executions**: the ledger shows an execution the attempt log does not explain
  (a token the server never granted, or granted to another worker).
- **misrecorded**: an attempt recorded with an outcome its execution did not have.

Times from the ledger and from the server are compared directly: the checker assumes one
clock (one host, or hosts kept in step), within `tolerance_s`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from conveyor.core.states import LEASE_EXPIRED, WORKER_DEAD, WORKER_DEREGISTERED
from conveyor.ledger.records import ExecutionRecord, SubmitRecord, result_digest
from conveyor.ledger.report import AttemptRecord, Finding, LedgerReport, TaskRecord

# The errors the engine records on attempts it ended itself (conveyor.core.states).
LEASE_EXPIRED_ERROR = LEASE_EXPIRED
WORKER_DEAD_ERROR = WORKER_DEAD
WORKER_DEREGISTERED_ERROR = WORKER_DEREGISTERED
_ENDED_BY_LEASE = frozenset({LEASE_EXPIRED_ERROR, WORKER_DEAD_ERROR})
"""Attempts the server ended on its own: their lease holds to its expiry all the same."""
TERMINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
_EXECUTED_OUTCOMES = frozenset({"succeeded", "failed", "timed_out", "crashed"})
"""Outcomes only an execution can produce: each needs a matching end in the ledger."""


@dataclass
class _Execution:
    """One execution of one lease by one worker process, from its start and end lines."""

    task_id: str
    token: int
    worker_id: str
    process: tuple[str, int]  # (worker name, pid)
    started_at: datetime
    starts: int = 0
    """Start lines for this lease in this process's ledger: more than one is a second run."""
    finished_at: datetime | None = None
    outcome: str | None = None
    reported: bool | None = None
    result_digest: str | None = None


def check(
    submits: Iterable[SubmitRecord],
    executions: Iterable[ExecutionRecord],
    final_tasks: Mapping[str, TaskRecord],
    lease_s: float,
    *,
    tolerance_s: float = 0.001,
) -> LedgerReport:
    """Check the ledgers against the final records; `lease_s` stands in for a lease expiry the
    server did not record. `final_tasks` should hold every task in the database, not only the
    acknowledged ones, for unexpected tasks to be found."""
    report = LedgerReport()
    submitted = _acknowledged(list(submits), report)
    runs = _executions(executions)
    by_task: dict[str, list[_Execution]] = defaultdict(list)
    for run in runs:
        by_task[run.task_id].append(run)
    ledger_workers = {run.worker_id for run in runs}
    tolerance = timedelta(seconds=tolerance_s)
    lease = timedelta(seconds=lease_s)

    for task_id in sorted(submitted):
        task = final_tasks.get(task_id)
        if task is None:
            report.lost.append(Finding(task_id, "acknowledged, but not in the database"))
        elif task.state not in TERMINAL_STATES:
            report.stuck.append(Finding(task_id, f"acknowledged, but still {task.state}"))
    for task_id in sorted(set(final_tasks) - submitted):
        report.unexpected.append(Finding(task_id, "in the database, never acknowledged"))
    for task_id in sorted(set(by_task) - submitted - set(final_tasks)):
        report.unexpected.append(Finding(task_id, "executed, never acknowledged"))

    overlaps = 0
    for task_id, task in final_tasks.items():
        task_runs = by_task.get(task_id, [])
        _check_recording(task, task_runs, ledger_workers, report)
        _check_starts(task, task_runs, lease, tolerance, report)
        overlaps += _overlapping(task_runs)

    attempts = [a for t in final_tasks.values() for a in t.attempts]
    report.final_states = dict(Counter(t.state for t in final_tasks.values()))
    report.figures = {
        "submitted": len(submitted),
        "tasks": len(final_tasks),
        "executions": len(runs),
        "executions_cut_off": sum(1 for r in runs if r.finished_at is None),
        "executions_stopped_by_server": sum(1 for r in runs if r.reported is False),
        "overlapping_executions": overlaps,
        "attempts": len(attempts),
        "attempts_expired": sum(1 for a in attempts if a.error == LEASE_EXPIRED_ERROR),
        "attempts_of_dead_workers": sum(1 for a in attempts if a.error == WORKER_DEAD_ERROR),
        "attempts_of_deregistered_workers": sum(
            1 for a in attempts if a.error == WORKER_DEREGISTERED_ERROR
        ),
        "retries_used": sum(t.retries_used for t in final_tasks.values()),
        **{f"attempts_{outcome}": n for outcome, n in _outcomes(attempts).items()},
    }
    return report


def _acknowledged(submits: list[SubmitRecord], report: LedgerReport) -> set[str]:
    ids_by_key: dict[str, set[str]] = defaultdict(set)
    for s in submits:
        if s.key is not None:
            ids_by_key[s.key].add(s.task_id)
    for key, ids in sorted(ids_by_key.items()):
        if len(ids) > 1:
            first, *others = sorted(ids)
            for other in others:
                report.unexpected.append(
                    Finding(other, f"key {key!r} was acknowledged as task {first} too")
                )
    return {s.task_id for s in submits}


def _executions(records: Iterable[ExecutionRecord]) -> list[_Execution]:
    runs: dict[tuple[str, int, str, int], _Execution] = {}
    for r in records:
        key = (r.task_id, r.token, r.worker_name, r.pid)
        run = runs.get(key)
        if run is None:
            run = runs[key] = _Execution(
                r.task_id, r.token, r.worker_id, (r.worker_name, r.pid), r.started_at
            )
        run.started_at = min(run.started_at, r.started_at)
        if r.event == "start":
            run.starts += 1
        elif r.event == "end":
            run.finished_at = r.finished_at
            run.outcome = r.outcome
            run.reported = r.reported
            run.result_digest = r.result_digest
    return list(runs.values())


def _check_recording(
    task: TaskRecord,
    runs: list[_Execution],
    ledger_workers: set[str],
    report: LedgerReport,
) -> None:
    attempts = {a.number: a for a in task.attempts}
    succeeded = [a.number for a in task.attempts if a.outcome == "succeeded"]
    if len(succeeded) > 1:
        report.recorded_twice.append(
            Finding(task.id, f"attempts {succeeded} were all recorded succeeded")
        )
    if succeeded and task.state != "succeeded":
        report.misrecorded.append(
            Finding(task.id, f"attempt {succeeded[0]} succeeded, but the task is {task.state}")
        )
    if task.state == "succeeded" and not succeeded:
        report.misrecorded.append(Finding(task.id, "succeeded without a succeeded attempt"))
    if succeeded:
        later = [n for n in attempts if n > succeeded[0]]
        if later:
            report.recorded_twice.append(
                Finding(task.id, f"attempts {later} leased after attempt {succeeded[0]} succeeded")
            )

    runs_by_token: dict[int, list[_Execution]] = defaultdict(list)
    for run in runs:
        runs_by_token[run.token].append(run)
    for token, token_runs in sorted(runs_by_token.items()):
        attempt = attempts.get(token)
        if attempt is None:
            report.unaccounted_executions.append(
                Finding(task.id, f"token {token} executed, but the server has no such attempt")
            )
            continue
        if len(token_runs) > 1:
            names = sorted(f"{name}-{pid}" for name, pid in (r.process for r in token_runs))
            report.executed_twice.append(
                Finding(task.id, f"token {token} executed by {len(token_runs)} processes: {names}")
            )
        for run in token_runs:
            if run.starts > 1:
                report.executed_twice.append(
                    Finding(
                        task.id,
                        f"token {token} started {run.starts} times by "
                        f"{run.process[0]}-{run.process[1]}",
                    )
                )
            if attempt.worker_id != run.worker_id:
                report.unaccounted_executions.append(
                    Finding(
                        task.id,
                        f"token {token} executed by worker {run.worker_id}, "
                        f"granted to {attempt.worker_id}",
                    )
                )

    for attempt in task.attempts:
        if attempt.outcome not in _EXECUTED_OUTCOMES or attempt.worker_id not in ledger_workers:
            continue  # only an execution can say; this worker kept no ledger
        ends = [r for r in runs_by_token.get(attempt.number, []) if r.outcome is not None]
        if not any(r.outcome == attempt.outcome for r in ends):
            seen = sorted({str(r.outcome) for r in ends}) or ["no end"]
            report.misrecorded.append(
                Finding(
                    task.id,
                    f"attempt {attempt.number} recorded {attempt.outcome}; its execution: {seen}",
                )
            )
        elif attempt.outcome == "succeeded" and task.state == "succeeded":
            digests = {r.result_digest for r in ends if r.outcome == "succeeded"}
            if result_digest(task.result) not in digests:
                report.recorded_twice.append(
                    Finding(
                        task.id,
                        f"the recorded result is not the one attempt {attempt.number} produced",
                    )
                )


def _valid_until(attempt: AttemptRecord, lease: timedelta) -> datetime:
    """Until when attempt's lease kept every other execution of its task from starting."""
    expiry = attempt.lease_expires_at or attempt.started_at + lease
    if attempt.finished_at is None:
        return expiry
    if attempt.outcome == "lost" and attempt.error in _ENDED_BY_LEASE:
        return max(attempt.finished_at, expiry)
    return attempt.finished_at


def _check_starts(
    task: TaskRecord,
    runs: list[_Execution],
    lease: timedelta,
    tolerance: timedelta,
    report: LedgerReport,
) -> None:
    ordered = sorted(task.attempts, key=lambda a: a.number)
    # The server's own record, each fact from one transaction's clock: every attempt ended
    # before the next was granted, and none was expired before its lease (as extended) ran out.
    for previous, following in pairwise(ordered):
        if previous.outcome is None:
            report.early_starts.append(
                Finding(
                    task.id,
                    f"attempt {following.number} was granted while attempt "
                    f"{previous.number} had not ended",
                )
            )
    for a in ordered:
        if (
            a.outcome == "lost"
            and a.error in _ENDED_BY_LEASE
            and a.finished_at is not None
            and a.lease_expires_at is not None
            and a.finished_at < a.lease_expires_at - tolerance
        ):
            early_s = (a.lease_expires_at - a.finished_at).total_seconds()
            report.early_starts.append(
                Finding(task.id, f"attempt {a.number} was expired {early_s:.3f}s early")
            )
    # What really ran, from the workers' ledgers: no execution may start inside the lease of
    # another attempt. (The grant times in the attempt log are not compared across attempts:
    # each is read when its transaction began, not when it committed.)
    windows = [(a.number, a.started_at, _valid_until(a, lease)) for a in ordered]
    for run in runs:
        for number, opened, valid_until in windows:
            if number != run.token and opened <= run.started_at < valid_until - tolerance:
                early_s = (valid_until - run.started_at).total_seconds()
                order = "an earlier" if number < run.token else "a later"
                report.early_starts.append(
                    Finding(
                        task.id,
                        f"execution of token {run.token} on {run.process[0]} started "
                        f"{early_s:.3f}s before {order} attempt {number}'s lease ended",
                    )
                )


def _overlapping(runs: list[_Execution]) -> int:
    """Executions that ran while another execution of the same task (another token) ran.

    Only executions with an end count: one cut off by a kill died with its worker at a moment
    the ledger does not know.
    """
    spans = [(r.token, r.started_at, r.finished_at) for r in runs if r.finished_at is not None]
    return sum(
        1
        for token, start, end in spans
        if any(t != token and start < e and s < end for t, s, e in spans)
    )


def _outcomes(attempts: Sequence[AttemptRecord]) -> dict[str, int]:
    return dict(Counter(a.outcome or "open" for a in attempts))
