"""The count of waiting tasks no live worker could ever take (Engine.unschedulable_count), as
the status answer and the metrics show it: read again only once it is old enough.

Each read groups every pending and queued task in the database (about 0.2 s for 100,000 on
SQLite here, growing with the queue), so a dashboard polling /status every few seconds must not
cause one per poll. A count is kept for `min_age_s`, and for at least `cost_factor` times as long
as it took to read, so that reading it never takes more than a small share of a server's time
however long the queues grow. Several servers each keep their own.
"""

from __future__ import annotations

import threading
import time

from conveyor.engine import Engine


class UnschedulableCount:
    def __init__(self, *, min_age_s: float = 10.0, cost_factor: float = 20.0) -> None:
        self._min_age_s = min_age_s
        self._cost_factor = cost_factor
        self._lock = threading.Lock()
        self._value = 0
        self._fresh_until = -1.0

    def get(self, engine: Engine) -> int:
        """The count, read again if the last one has aged out. Blocking: call it in a thread."""
        with self._lock:
            if time.monotonic() < self._fresh_until:
                return self._value
            started = time.monotonic()
            self._value = engine.unschedulable_count()
            took_s = time.monotonic() - started
            self._fresh_until = started + max(self._min_age_s, self._cost_factor * took_s)
            return self._value
