"""Conveyor bugs the fault matrix found that are not fixed yet.

Each one has a test that reproduces it on purpose (tests/chaos/test_known_bugs.py), marked
`xfail(strict=True)`: the day the bug is fixed that test passes, strict xfail turns the pass
into a failure, and whoever fixed it deletes the entry here and the mark there. Until then:

- a finding of the matrix that a known bug explains (`explains`) is counted apart, by bug, and
  printed with the figures, but does not fail the run; every other finding does;
- a poison that stops the worker running it is left out of the matrix's default poisons
  (workload.KNOWN_WORKER_KILLERS), or every worker would die in turn and nothing else could be
  checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.ledger import Finding, TaskRecord
from conveyor.ledger.checker import WORKER_DEREGISTERED_ERROR


@dataclass(frozen=True)
class KnownBug:
    id: str
    summary: str
    reproduced_by: str
    """The test that shows it, marked xfail(strict=True)."""
    category: str
    """The checker's category its findings fall in."""
    explains: Callable[[Finding, TaskRecord], bool]


_STALE_EXECUTION = re.compile(r"^execution of token (\d+) on .* a later attempt \d+'s lease ended$")


def _stale_start_of_a_deregistered_lease(finding: Finding, task: TaskRecord) -> bool:
    """An execution of token n that started inside a later attempt's lease, where attempt n was
    ended by deregistering its worker: the worker started a task it had prefetched before it
    learned it was deregistered."""
    match = _STALE_EXECUTION.match(finding.detail)
    if match is None:
        return False
    token = int(match.group(1))
    return any(a.number == token and a.error == WORKER_DEREGISTERED_ERROR for a in task.attempts)


KNOWN_BUGS = (
    KnownBug(
        id="prefetched_after_deregistration",
        summary="a worker deregistered while it holds a prefetched lease still starts that "
        "task before it learns it was deregistered, although the deregistration re-queued it "
        "and another worker may already run it",
        reproduced_by="tests/chaos/test_known_bugs.py::"
        "test_a_deregistered_worker_never_starts_a_task_it_had_prefetched",
        category="early_starts",
        explains=_stale_start_of_a_deregistered_lease,
    ),
)


def explained_by(category: str, finding: Finding, task: TaskRecord | None) -> KnownBug | None:
    """The known bug that explains `finding`, if any."""
    if task is None:
        return None
    return next(
        (b for b in KNOWN_BUGS if b.category == category and b.explains(finding, task)), None
    )
