"""Pauses: what an operator holds back, and until when. Pure: no I/O, no clock.

A pause holds back one queue (nothing of it is leased), one schedule (it does not fire) or every
queue at once (`all`: nothing is leased at all), until it is resumed or, with `until`, until
that moment: a pause until T holds before T and not from T on. Tasks already running are not
touched; submitting goes on, so that the queue is full again when it is resumed. A schedule's
firings missed while it was paused follow its misfire policy once it is resumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PauseScope(StrEnum):
    QUEUE = "queue"
    SCHEDULE = "schedule"
    ALL = "all"
    """Every queue: the whole cluster leases nothing (schedules still fire)."""


@dataclass(frozen=True, slots=True)
class Pause:
    scope: PauseScope
    name: str
    """The queue or schedule held back; empty for `all`."""
    paused_at: datetime
    until: datetime | None = None
    """When the pause ends by itself; None: when it is resumed."""

    def holds(self, now: datetime) -> bool:
        return self.until is None or now < self.until


def holding(pauses: Iterable[Pause], now: datetime) -> list[Pause]:
    """The pauses that hold at `now`, all first, then queues and schedules by name."""
    order = {PauseScope.ALL: 0, PauseScope.QUEUE: 1, PauseScope.SCHEDULE: 2}
    return sorted((p for p in pauses if p.holds(now)), key=lambda p: (order[p.scope], p.name))


def leasable(queues: Sequence[str], pauses: Iterable[Pause], now: datetime) -> list[str]:
    """The queues of `queues`, in their order, that no pause holds at `now`."""
    held: set[str] = set()
    for pause in pauses:
        if not pause.holds(now):
            continue
        if pause.scope is PauseScope.ALL:
            return []
        if pause.scope is PauseScope.QUEUE:
            held.add(pause.name)
    return [queue for queue in queues if queue not in held]


def paused_schedules(pauses: Iterable[Pause], now: datetime) -> set[str]:
    """The names of the schedules a pause holds at `now`."""
    return {p.name for p in pauses if p.scope is PauseScope.SCHEDULE and p.holds(now)}
