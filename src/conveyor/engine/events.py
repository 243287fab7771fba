"""What the engine tells listeners after a commit: queues with new ready tasks, finished tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.core.types import TaskId

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Changes:
    """Collected during a transaction; published only once it has committed."""

    ready_queues: set[str] = field(default_factory=set)
    finished: set[TaskId] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.ready_queues or self.finished)


Listener = Callable[[Changes], None]


class Events:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each commit that made tasks ready or finished; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, changes: Changes) -> None:
        if not changes:
            return
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:  # a faulty listener must not undo a committed change
                log.exception("engine listener failed", extra={"listener": repr(listener)})
