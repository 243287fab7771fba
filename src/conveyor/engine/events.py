"""What the engine tells listeners after a commit: queues with new ready tasks, finished tasks,
workers given an order (drain, stop, deregistered)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from conveyor.core.models import Task
from conveyor.core.types import TaskId, WorkerId

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Changes:
    """Collected during a transaction; published only once it has committed.

    Carries the task records themselves so that listeners (long-polls, metrics, dashboards) need
    no read of their own.
    """

    ready: dict[str, int] = field(default_factory=dict)
    """Tasks made ready, by queue: a long-poll server wakes that many waiting workers, not all."""
    submitted: list[Task] = field(default_factory=list)
    leased: list[Task] = field(default_factory=list)
    ended: dict[TaskId, Task] = field(default_factory=dict)
    """Tasks that reached a terminal state, by id."""
    ordered: set[WorkerId] = field(default_factory=set)
    """Workers told to drain or stop, or deregistered: their next heartbeat's answer changed."""

    @property
    def ready_queues(self) -> set[str]:
        return set(self.ready)

    def made_ready(self, queue: str) -> None:
        self.ready[queue] = self.ready.get(queue, 0) + 1

    @property
    def finished(self) -> set[TaskId]:
        return set(self.ended)

    def end(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            self.ended[task.id] = task

    def __bool__(self) -> bool:
        return bool(self.ready or self.submitted or self.leased or self.ended or self.ordered)

    def merge(self, other: Changes) -> None:
        """Add what `other` says, as if both had been collected in one transaction."""
        for queue, count in other.ready.items():
            self.ready[queue] = self.ready.get(queue, 0) + count
        self.submitted.extend(other.submitted)
        self.leased.extend(other.leased)
        self.ended.update(other.ended)
        self.ordered |= other.ordered


Listener = Callable[[Changes], None]


class Events:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._held = threading.local()

    @contextmanager
    def held(self) -> Iterator[Changes]:
        """Collect what is published on this thread meanwhile instead of telling listeners:
        inside an outer transaction, an operation's commit is not yet the real one. The caller
        publishes the collected changes once the outer transaction has committed."""
        collected = Changes()
        self._held.changes = collected
        try:
            yield collected
        finally:
            self._held.changes = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each commit that made tasks ready or finished; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, changes: Changes) -> None:
        if not changes:
            return
        held: Changes | None = getattr(self._held, "changes", None)
        if held is not None:
            held.merge(changes)
            return
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:  # a faulty listener must not undo a committed change
                log.exception("engine listener failed", extra={"listener": repr(listener)})
