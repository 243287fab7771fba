"""What a worker advertises, minus what the tasks it holds use: the `free` of its next lease."""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.core.types import TaskId


class ResourceLedger:
    """Resources held by leased tasks, by task id. Not thread-safe: the caller guards it."""

    def __init__(self, advertised: Mapping[str, float]) -> None:
        self.advertised = dict(advertised)
        self._held: dict[TaskId, Mapping[str, float]] = {}

    def hold(self, task_id: TaskId, resources: Mapping[str, float]) -> None:
        self._held[task_id] = resources

    def release(self, task_id: TaskId) -> None:
        self._held.pop(task_id, None)

    def free(self) -> dict[str, float]:
        free = dict(self.advertised)
        for used in self._held.values():
            for name, amount in used.items():
                free[name] = free.get(name, 0.0) - amount
        return free
