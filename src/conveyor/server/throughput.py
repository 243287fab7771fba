"""A rolling count of finished tasks, for /status. Per server process: each server counts the
tasks it saw finish (those whose reports, cancels or timers it committed), not its peers'."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from conveyor.engine.events import Changes


class RollingCount:
    """Events counted in one-second buckets over the last `window_s` seconds. Thread-safe."""

    def __init__(self, window_s: int = 60, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        if count <= 0:
            return
        second = int(self._clock())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += count
            else:
                self._buckets.append([second, count])
            self._trim(second)

    def total(self) -> int:
        with self._lock:
            self._trim(int(self._clock()))
            return sum(count for _, count in self._buckets)

    def on_changes(self, changes: Changes) -> None:
        """Engine listener: count the tasks that reached a terminal state."""
        self.add(len(changes.finished))

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()
