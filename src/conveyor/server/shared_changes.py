"""Several servers on one database: each hears what the others committed.

A store that several servers can share offers `change_feed()` (PostgreSQL: LISTEN/NOTIFY). This
server publishes its engine's changes on it and wakes its own long-polls, result waits and held
heartbeats with the other servers' changes. A store only one process writes to (SQLite) has no
feed: its engine events already say everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.engine import Changes, Engine
from conveyor.server.waiters import Waiters


@contextmanager
def shared_changes(engine: Engine, waiters: Waiters) -> Iterator[None]:
    make_feed = getattr(engine.store, "change_feed", None)
    if make_feed is None:
        yield
        return
    feed = make_feed()
    feed.start(waiters.wake)

    def publish(changes: Changes) -> None:
        feed.publish(changes.ready_queues, changes.finished, changes.ordered)

    unsubscribe = engine.events.subscribe(publish)
    try:
        yield
    finally:
        unsubscribe()
        feed.stop()
