"""Conveyor bugs the fault matrix found that are not fixed yet.

Each one has a test that reproduces it on purpose (tests/chaos/test_found_by_the_matrix.py), marked
`xfail(strict=True)`: the day the bug is fixed that test passes, strict xfail turns the pass
into a failure, and whoever fixed it deletes the entry here and the mark there. Until then:

- a finding of the matrix that a known bug explains (`explains`) is counted apart, by bug, and
  printed with the figures, but does not fail the run; every other finding does;
- a poison that stops the worker running it is left out of the matrix's default poisons
  (workload.KNOWN_WORKER_KILLERS), or every worker would die in turn and nothing else could be
  checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conveyor.ledger import Finding, TaskRecord


@dataclass(frozen=True)
class KnownBug:
    id: str
    summary: str
    reproduced_by: str
    """The test that shows it, marked xfail(strict=True)."""
    category: str
    """The checker's category its findings fall in."""
    explains: Callable[[Finding, TaskRecord], bool]


KNOWN_BUGS: tuple[KnownBug, ...] = ()
"""None at present. The last ones (a deregistered worker starting a task it had prefetched; a
result with a lone surrogate or over 1 MiB stopping its worker) are fixed, and their tests in
tests/chaos/test_found_by_the_matrix.py guard against their return."""


def explained_by(category: str, finding: Finding, task: TaskRecord | None) -> KnownBug | None:
    """The known bug that explains `finding`, if any."""
    if task is None:
        return None
    return next(
        (b for b in KNOWN_BUGS if b.category == category and b.explains(finding, task)), None
    )
