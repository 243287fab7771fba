"""What the checker reads from the server (TaskRecord) and what it finds (LedgerReport)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.api.schemas import TaskDetail
from conveyor.core.types import JSON

CATEGORIES = (
    "lost",
    "stuck",
    "unexpected",
    "recorded_twice",
    "executed_twice",
    "early_starts",
    "unaccounted_executions",
    "misrecorded",
)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    worker_id: str | None
    started_at: datetime
    lease_expires_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the server finally recorded it."""

    id: str
    state: str
    result: JSON = None
    attempts: Sequence[AttemptRecord] = ()
    reason: str | None = None
    retries_used: int = 0
    name: str | None = None
    key: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, detail: TaskDetail) -> TaskRecord:
        """From `GET /api/v1/tasks/{id}`."""
        return cls(
            id=detail.id,
            state=detail.state.value,
            result=detail.result,
            attempts=[
                AttemptRecord(
                    number=a.number,
                    worker_id=a.worker_id,
                    started_at=a.started_at,
                    lease_expires_at=a.lease_expires_at,
                    finished_at=a.finished_at,
                    outcome=a.outcome.value if a.outcome else None,
                    error=a.error,
                    stdout_tail=a.stdout_tail,
                    stderr_tail=a.stderr_tail,
                )
                for a in detail.attempt_log
            ],
            reason=detail.reason.value if detail.reason else None,
            retries_used=detail.retries_used,
            name=detail.name,
            key=detail.key,
            error=detail.error,
        )


@dataclass(frozen=True, slots=True)
class Finding:
    task_id: str
    detail: str


@dataclass
class LedgerReport:
    lost: list[Finding] = field(default_factory=list)
    stuck: list[Finding] = field(default_factory=list)
    unexpected: list[Finding] = field(default_factory=list)
    recorded_twice: list[Finding] = field(default_factory=list)
    executed_twice: list[Finding] = field(default_factory=list)
    early_starts: list[Finding] = field(default_factory=list)
    unaccounted_executions: list[Finding] = field(default_factory=list)
    misrecorded: list[Finding] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    """Counts that describe the run: tasks, executions, attempts by outcome, overlaps, ..."""
    final_states: dict[str, int] = field(default_factory=dict)

    def findings(self, category: str) -> list[Finding]:
        found: list[Finding] = getattr(self, category)
        return found

    @property
    def violations(self) -> int:
        return sum(len(self.findings(c)) for c in CATEGORIES)

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "ok": self.ok,
            "violations": {c: len(self.findings(c)) for c in CATEGORIES},
            "figures": dict(self.figures),
            "final_states": dict(self.final_states),
        }
        for c in CATEGORIES:
            out[c] = [{"task_id": f.task_id, "detail": f.detail} for f in self.findings(c)]
        return out

    def summary(self) -> str:
        f = self.figures
        lines = [
            f"{f.get('submitted', 0)} tasks acknowledged, {f.get('tasks', 0)} in the database; "
            f"{f.get('executions', 0)} executions ({f.get('executions_cut_off', 0)} cut off), "
            f"{f.get('attempts', 0)} attempts, {f.get('overlapping_executions', 0)} executions "
            "overlapping another after its lease expired",
            "final states: "
            + (", ".join(f"{s} {n}" for s, n in sorted(self.final_states.items())) or "none"),
            "violations: "
            + ", ".join(f"{c.replace('_', ' ')} {len(self.findings(c))}" for c in CATEGORIES),
        ]
        for c in CATEGORIES:
            for finding in self.findings(c)[:5]:
                lines.append(f"  {c}: task {finding.task_id}: {finding.detail}")
        lines.append("OK" if self.ok else f"FAILED: {self.violations} violation(s)")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)
