"""Which `queue` and `handler` values /metrics reports as themselves; the rest are `other`.

Any client chooses a task's queue and handler. Were each value a label value, one batch of 200
tasks with made-up names would add hundreds of series, each kept by Prometheus for weeks, and a
fuzzer could grow /metrics without end. So a value is reported as itself only when it is known:

- queues: `default`, the queues of registered workers (read at each scrape) and any queue a
  worker leased a task from (a worker asked for it); handlers: the built-in ones, and any
  handler a task of which succeeded (it exists in the workers' code);
- or named by the operator (`conveyor server --metrics-queue/--metrics-handler`, exact names or
  fnmatch patterns such as `tenant-*`).

Values learned or matched by a pattern are capped (MAX_LEARNED per label), so that no sequence of
requests can add more than a bounded number of series; exact names and built-ins do not count
against it. Everything else is counted under OTHER.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from fnmatch import fnmatchcase

from conveyor.handlers import BUILTIN_HANDLERS

OTHER = "other"
MAX_LEARNED = 100
"""Values per label learned from workers and successes, or admitted by a pattern."""
DEFAULT_QUEUE = "default"


class LabelValues:
    """One label's known values. Thread-safe: engine listeners run in the committing thread."""

    def __init__(
        self, fixed: Iterable[str] = (), patterns: Iterable[str] = (), limit: int = MAX_LEARNED
    ) -> None:
        self._fixed = frozenset(fixed)
        self._patterns = tuple(patterns)
        self._limit = limit
        self._learned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, allowed: Iterable[str], fixed: Iterable[str] = ()) -> LabelValues:
        """Operator entries (exact names, or fnmatch patterns with `*?[`) plus `fixed`."""
        entries = list(allowed)
        patterns = [e for e in entries if any(c in e for c in "*?[")]
        exact = [e for e in entries if e not in patterns]
        return cls([*fixed, *exact], patterns)

    def learn(self, value: str) -> None:
        """Know `value` from now on, while fewer than the limit are learned."""
        if value in self._fixed or value in self._learned:
            return
        with self._lock:
            if len(self._learned) < self._limit:
                self._learned.add(value)

    def __call__(self, value: str) -> str:
        """`value` as the label reports it: itself when known, else OTHER."""
        if value in self._fixed or value in self._learned:
            return value
        if any(fnmatchcase(value, pattern) for pattern in self._patterns):
            self.learn(value)
            if value in self._learned:
                return value
        return OTHER


class MetricLabels:
    """The bounds of the `queue` and `handler` labels of one server's metrics."""

    def __init__(self, queues: Iterable[str] = (), handlers: Iterable[str] = ()) -> None:
        self.queue = LabelValues.of(queues, fixed=[DEFAULT_QUEUE])
        self.handler = LabelValues.of(handlers, fixed=BUILTIN_HANDLERS)
