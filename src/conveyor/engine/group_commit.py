"""Group commit: the engine calls of many concurrent requests share one store transaction.

A server answers a write (submit, lease, report) only once its transaction has committed. One
commit per request costs a WAL flush on PostgreSQL (a millisecond) and a lock hand-over between
threads on SQLite; with many requests in flight, most of a request's time went there. Here one
thread, the committer, takes every call queued since its last commit and runs them all in one
transaction, each in a savepoint of it (the stores open a nested transaction as a savepoint):
a call that raises undoes only its own work and gets its own error. Then it commits once,
publishes the calls' engine events (held back until then), and answers every call.

On a store whose commit costs less than those hand-overs (SQLite without an fsync per commit),
`inline_when_idle` runs a call in place, on the caller's event loop, when no group is queued or
being committed: a lone request then pays neither thread hop, and requests that arrive while a
group is on its way still join the next one.

On a store that runs concurrent write transactions well (PostgreSQL: row locks, SKIP LOCKED,
append-only counters), `committers` > 1 lets that many groups be on their way at once, so that
a submit does not queue behind a lease that is waiting on the database's round trips.

Nothing is acknowledged before it is durable: a call's result is handed back only after the
commit that stored it. If that commit fails, every call of the group gets the error, and none
of their work was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from conveyor.engine.events import Events
from conveyor.store.base import Store

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MAX_GROUP = 256
"""Calls per transaction at most: bounds how long one commit makes the first caller wait."""


@dataclass(slots=True)
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class GroupCommit:
    """Runs engine calls for an event loop's requests, grouped into shared transactions.

    `fn` must be an engine operation that opens its transactions with `store.transaction()` and
    publishes its changes on `events`, as every Engine method does.
    """

    def __init__(
        self,
        store: Store,
        events: Events,
        *,
        max_group: int = MAX_GROUP,
        autostart: bool = True,
        inline_when_idle: bool = False,
        committers: int = 1,
    ) -> None:
        if committers < 1:
            raise ValueError(f"committers must be at least 1, got {committers}")
        self._store = store
        self._events = events
        self._max_group = max_group
        self._autostart = autostart
        """Start the committers on the first call if start() was not called (apps run without
        their lifespan); tests turn it off to queue several calls before the first group."""
        self._inline_when_idle = inline_when_idle
        self._committers = committers
        self._committing = 0
        """Groups being run by the committers right now."""
        self._queue: queue.SimpleQueue[_Call | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"conveyor-committer-{i}", daemon=True)
                    for i in range(self._committers)
                ]
                for thread in self._threads:
                    thread.start()

    def stop(self) -> None:
        """Run what is queued, then end the threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in a committer's next transaction; its result once committed."""
        if self._inline_when_idle and not self._committing and self._queue.empty():
            # The operation commits its own transaction and publishes its own events.
            return fn(*args, **kwargs)
        if not self._threads and self._autostart:
            self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(fn, args, kwargs, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            # Each committer takes exactly one _STOP (stop() queues one per committer, after
            # everything else), so a group ends at the first one it meets.
            group: list[_Call] = [item]  # type: ignore[list-item]
            stopping = False
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)  # type: ignore[arg-type]
            with self._lock:
                self._committing += 1
            try:
                self._commit(group)
            finally:
                with self._lock:
                    self._committing -= 1
            if stopping:
                return

    def _commit(self, group: list[_Call]) -> None:
        outcomes: list[tuple[_Call, bool, Any]] = []
        if len(group) == 1:
            # A group of one needs no outer transaction: the call's own is the same thing
            # without a savepoint, and a savepoint costs two round trips on PostgreSQL.
            (call,) = group
            try:
                outcomes.append((call, True, call.fn(*call.args, **call.kwargs)))
            except Exception as exc:
                outcomes.append((call, False, exc))
            self._answer_all(outcomes)
            return
        try:
            with self._events.held() as changes, self._store.transaction():
                for call in group:
                    try:
                        outcomes.append((call, True, call.fn(*call.args, **call.kwargs)))
                    except Exception as exc:  # the call's own error, its work undone
                        outcomes.append((call, False, exc))
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the group is stored
            log.warning("a group commit failed", extra={"calls": len(group), "error": str(exc)})
            outcomes = [(call, False, exc) for call in group]
        else:
            self._events.publish(changes)
        self._answer_all(outcomes)

    @staticmethod
    def _answer_all(outcomes: list[tuple[_Call, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_answer, answers)


def _answer(outcomes: list[tuple[_Call, bool, Any]]) -> None:
    for call, ok, value in outcomes:
        if call.future.done():  # the request was cancelled meanwhile
            continue
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
