"""The tasks a worker leased and has not started: prefetched ones waiting for a slot.

A prefetch exists so that a slot never waits on the network; it must not make a task wait for
a slot while another worker could run it. So the room remembers when each task arrived, and a
task that waited `hold_s` (PREFETCH_HOLD_S by default; every slot stayed busy meanwhile) is taken out to be handed
back (worker.py), and the worker prefetches nothing more for a while (bookkeeping.py).
Used by the main thread alone.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable

from conveyor.api.schemas import AssignmentOut
from conveyor.worker.bookkeeping import PREFETCH_HOLD_S


class WaitingRoom:
    def __init__(self, hold_s: float = PREFETCH_HOLD_S) -> None:
        self.hold_s = hold_s
        self._tasks: collections.deque[AssignmentOut] = collections.deque()
        self._since: dict[tuple[str, int], float] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def arrive(self, task: AssignmentOut, now: float) -> None:
        self._tasks.append(task)
        self._since[(task.task_id, task.token)] = now

    def next(self) -> AssignmentOut:
        """The first task waiting, taken out (it starts, or is dropped or handed back)."""
        task = self._tasks.popleft()
        self._since.pop((task.task_id, task.token), None)
        return task

    def put_back(self, tasks: Iterable[AssignmentOut], now: float) -> None:
        """Tasks taken out that could not start yet (an older execution of the same task is
        still being killed): first in line again, their wait counted from `now`."""
        tasks = list(tasks)
        self._tasks.extendleft(reversed(tasks))
        for task in tasks:
            self._since[(task.task_id, task.token)] = now

    def stranded(self, now: float) -> list[AssignmentOut]:
        """The tasks that have waited `hold_s` or longer, taken out."""
        before = now - self.hold_s
        out = [t for t in self._tasks if self._since[(t.task_id, t.token)] <= before]
        for task in out:
            self._tasks.remove(task)
            del self._since[(task.task_id, task.token)]
        return out

    def next_strand_s(self, now: float) -> float | None:
        """How long until the task waiting longest has waited `hold_s` (None: none)."""
        if not self._since or math.isinf(self.hold_s):
            return None
        return max(min(self._since.values()) + self.hold_s - now, 0.0)
