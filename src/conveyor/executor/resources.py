"""What a worker advertises, minus what the tasks it holds use: the `free` of its next lease."""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class ResourceLedger:
    """Resources held by leased tasks, by lease (a task id, or a task id and a fencing token:
    two leases of one task may be held at once while the older one's execution is killed).
    Not thread-safe: the caller guards it."""

    def __init__(self, advertised: Mapping[str, float]) -> None:
        self.advertised = dict(advertised)
        self._held: dict[Hashable, Mapping[str, float]] = {}

    def hold(self, lease: Hashable, resources: Mapping[str, float]) -> None:
        self._held[lease] = resources

    def release(self, lease: Hashable) -> None:
        self._held.pop(lease, None)

    def free(self) -> dict[str, float]:
        free = dict(self.advertised)
        for used in self._held.values():
            for name, amount in used.items():
                free[name] = free.get(name, 0.0) - amount
        return free
