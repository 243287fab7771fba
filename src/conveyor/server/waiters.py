"""Waiting on the event loop for engine events: long-poll leases and result waits.

The engine publishes `Changes` synchronously, in whichever thread committed, after the commit.
`Waiters` hands them to the event loop with `call_soon_threadsafe`; there they set the asyncio
events of the requests that wait for them. Nothing here polls the database.

A waiting request registers its interest *before* it looks at the database. A change committed
after that look is published after that registration, so it always wakes the request; a change
committed before the look is seen by the look itself. Either way no wake-up is lost.

A worker's heartbeat may wait too (`orders`): with nothing to say, it is held until the worker
is given an order (a task it runs cancelled, a drain, a stop, its deregistration), so that the
worker hears of it the moment it is given rather than at its next heartbeat, through whichever
server it was given (another server's orders come with its changes, shared_changes.py).

A change that made n tasks ready in a queue wakes n of the long-polls waiting on it, not all:
every other woken worker would spend a write on finding nothing. The wake is passed on, to
every other long-poll of its queues, when the one it chose could not use it: its look found
nothing (the task did not fit it, or another server's worker was quicker), or it ended
without looking again (its worker went away, its time was up). Another server's changes carry
no counts and wake every long-poll they concern, as a wake that is not passed on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from enum import Enum
from itertools import chain
from typing import Generic, NamedTuple, TypeVar

from conveyor.core.models import Task
from conveyor.core.types import TaskId, WorkerId
from conveyor.engine.events import Changes, Events

T = TypeVar("T")


class Granted(NamedTuple, Generic[T]):
    """What a long-poll leased, and how long it waited before the look that leased it."""

    tasks: list[T]
    waited_s: float
    """From the call to the start of the last look: each lease it granted began later, so
    it runs at least this plus the lease time from when the worker sent its request."""


class Wake(Enum):
    CHOSEN = "chosen"
    """One of the n long-polls woken for n ready tasks: passed on if it cannot be used."""
    SHARED = "shared"
    """Woken with every other long-poll of the queue (a pass-on, or counts unknown)."""


class Watch:
    """One request's interest: queues that get ready tasks (None: any queue), or one task."""

    __slots__ = ("ended", "event", "idle", "queues", "task_id", "wake", "worker_id")

    def __init__(
        self,
        queues: frozenset[str] | None,
        task_id: TaskId | None,
        worker_id: WorkerId | None = None,
    ) -> None:
        self.event = asyncio.Event()
        self.queues = queues
        self.task_id = task_id
        self.worker_id = worker_id
        """A heartbeat's interest in its worker's orders."""
        self.ended: Task | None = None
        """The task as its engine event carried it, when this server committed its end."""
        self.wake: Wake | None = None
        """A long-poll's wake not yet answered by a look at the database."""
        self.idle = False
        """A long-poll between looks, asleep: the first choice for a wake."""


class Waiters:
    """The requests of one server that wait for tasks to become ready or to finish."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Dicts as ordered sets: of the long-polls asleep on a queue, the one waiting longest is
        # woken first.
        self._any_queue: dict[Watch, None] = {}
        self._by_queue: dict[str, dict[Watch, None]] = {}
        self._by_task: dict[TaskId, dict[Watch, None]] = {}
        self._by_worker: dict[WorkerId, dict[Watch, None]] = {}
        self._closed = False
        self._ends = 0
        """Change sets with ended tasks heard of so far (see `ends_heard`)."""
        self._ends_lock = threading.Lock()  # committers publish from several threads

    # ---- life cycle (on the event loop) -----------------------------------------------------

    def start(self) -> None:
        """Listen to the engine from now on, delivering to the running loop. Idempotent."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._closed = False
            self._unsubscribe = self._events.subscribe(self._on_changes)

    def stop(self) -> None:
        """Stop listening and wake every waiting request, which then answers with what it has."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._close()
        self._loop = None

    def close_threadsafe(self) -> None:
        """From any thread (a signal handler): wake every waiting request; new ones do not wait."""
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        self._closed = True
        for watches in (
            self._any_queue,
            *self._by_queue.values(),
            *self._by_task.values(),
            *self._by_worker.values(),
        ):
            for watch in watches:
                watch.event.set()

    # ---- waiting (on the event loop) --------------------------------------------------------

    async def lease(
        self,
        attempt: Callable[[], Awaitable[list[T]]],
        *,
        wait_s: float,
        queues: Collection[str] | None,
        find_queues: Callable[[], Awaitable[Collection[str]]] | None = None,
        keep_on: Callable[[Granted[T]], Awaitable[bool]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> Granted[T]:
        """Call `attempt` until it returns something, or `wait_s` has passed; between calls,
        sleep until one of `queues` (None: any) gets a ready task.

        With `queues=None`, `find_queues` is asked once, after the first empty attempt, which
        queues to watch: a worker's lookup costs a read only when it has to wait.

        With `keep_on`, what an attempt got goes to it instead, and while it returns True the
        poll goes on, for up to `wait_s` again (a following lease pushes each grant). The watch
        stays in place meanwhile: what gets ready while a grant is pushed wakes the next
        attempt, so none has to look first. Once `stop` is set, no attempt is made any more:
        the poll ends at once, with nothing.
        """
        called = looked = time.monotonic()
        deadline = called + wait_s
        with self._watch(frozenset(queues) if queues else None, None) as watch:
            relay = _relay(stop, watch.event) if stop is not None else None
            try:
                while True:
                    if stop is not None and stop.is_set():
                        return Granted([], looked - called)
                    answering, watch.wake = watch.wake, None
                    watch.event.clear()
                    looked = time.monotonic()
                    got = await attempt()
                    if not got and answering is Wake.CHOSEN:
                        self._pass_on(watch)  # a task this worker could not take
                    if got and keep_on is not None and await keep_on(Granted(got, looked - called)):
                        got, deadline = [], time.monotonic() + wait_s
                    elif got:
                        return Granted(got, looked - called)
                    remaining = deadline - time.monotonic()
                    if self._closed or remaining <= 0:
                        return Granted(got, looked - called)
                    if watch.queues is None and find_queues is not None:
                        # The event is kept: anything that got ready meanwhile still wakes us.
                        self._retarget(watch, frozenset(await find_queues()))
                        find_queues = None
                    watch.idle = True
                    try:
                        if not await self._wait(watch.event, deadline - time.monotonic()):
                            return Granted(got, looked - called)
                    finally:
                        watch.idle = False
            finally:
                if relay is not None:
                    relay.cancel()
                if watch.wake is Wake.CHOSEN:  # chosen, and gone without looking
                    self._pass_on(watch)

    @property
    def ends_heard(self) -> int:
        """A count that moves whenever this server hears of tasks ending. A request that got a
        task from a write begun when the count stood at n, and finds it still at n once it
        watches the task, knows the task cannot have ended meanwhile: it need not read it."""
        return self._ends

    async def result(
        self,
        task_id: TaskId,
        read: Callable[[], Awaitable[Task]],
        *,
        wait_s: float,
        known: tuple[Task, int] | None = None,
    ) -> Task:
        """Read the task; if it has not finished, wait up to `wait_s` for it to, and read again.

        `known=(task, ends_heard)`: the task as a write returned it and `ends_heard` from before
        that write; it stands in for the first read when no task has ended since.
        """
        with self._watch(None, task_id) as watch:
            if known is not None and known[1] == self._ends:
                task = known[0]
            else:
                task = await read()
            if task.state.is_terminal or wait_s <= 0 or self._closed:
                return task
            await self._wait(watch.event, wait_s)
            if watch.ended is not None:  # as committed: no need to read it back
                return watch.ended
        return await read()

    async def orders(
        self,
        worker_id: WorkerId,
        beat: Callable[[], Awaitable[T]],
        says_something: Callable[[T], bool],
        *,
        wait_s: float,
    ) -> T:
        """A heartbeat: `beat()`; if its answer says nothing, wait up to `wait_s` for the
        worker to be given an order (a task it runs cancelled, a drain, a stop), then `beat()`
        again. The watch is in place before the first beat: an order committed after it wakes
        the wait, one committed before it is in its answer."""
        with self._watch(None, None, worker_id) as watch:
            answer = await beat()
            if says_something(answer) or not await self._wait(watch.event, wait_s):
                return answer
        return await beat()

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Whether the event came (False: timed out, or the server is stopping)."""
        if self._closed or timeout_s <= 0:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        return not self._closed

    # ---- registrations (on the event loop) --------------------------------------------------

    @contextmanager
    def _watch(
        self,
        queues: frozenset[str] | None,
        task_id: TaskId | None,
        worker_id: WorkerId | None = None,
    ) -> Iterator[Watch]:
        self.start()
        watch = Watch(queues, task_id, worker_id)
        self._add(watch)
        try:
            yield watch
        finally:
            self._remove(watch)

    def _retarget(self, watch: Watch, queues: frozenset[str]) -> None:
        self._remove(watch)
        watch.queues = queues or None
        self._add(watch)

    def _add(self, watch: Watch) -> None:
        if watch.worker_id is not None:
            self._by_worker.setdefault(watch.worker_id, {})[watch] = None
        elif watch.task_id is not None:
            self._by_task.setdefault(watch.task_id, {})[watch] = None
        elif watch.queues is None:
            self._any_queue[watch] = None
        else:
            for queue in watch.queues:
                self._by_queue.setdefault(queue, {})[watch] = None

    def _remove(self, watch: Watch) -> None:
        if watch.worker_id is not None:
            _discard(self._by_worker, watch.worker_id, watch)
        elif watch.task_id is not None:
            _discard(self._by_task, watch.task_id, watch)
        elif watch.queues is None:
            self._any_queue.pop(watch, None)
        else:
            for queue in watch.queues:
                _discard(self._by_queue, queue, watch)

    # ---- delivery ---------------------------------------------------------------------------

    def _on_changes(self, changes: Changes) -> None:
        """Engine listener: runs in the committing thread, right after the commit."""
        self.wake(changes.ready, changes.finished, ended=changes.ended, ordered=changes.ordered)

    def wake(
        self,
        ready_queues: Mapping[str, int] | Collection[str] | None,
        finished: Collection[TaskId] | None,
        *,
        ended: Mapping[TaskId, Task] | None = None,
        ordered: Collection[WorkerId] | None = (),
    ) -> None:
        """Wake long-polls on `ready_queues` (None: every one), result waits on `finished`
        (None: every one), and the heartbeats of the workers `ordered` (None: every one).

        `ready_queues` maps a queue to the number of tasks made ready in it, which is how many
        long-polls it wakes; a plain collection of queues wakes every long-poll on them.

        Thread-safe; called after a commit, by this server's engine or with another server's
        changes. Reading the registrations from any thread is safe: a request that registers
        after these reads looks at the database after the commit, so it needs no wake-up.
        """
        if finished is None or finished:
            # Before the registrations are read: see ends_heard.
            with self._ends_lock:
                self._ends += 1
        loop = self._loop
        ready: dict[str, int | None] | None = {}
        if ready_queues is None:
            ready = None  # every queue watched, read on the loop (_deliver)
        elif self._any_queue or self._by_queue:
            if isinstance(ready_queues, Mapping):
                ready = dict(ready_queues)
            else:
                ready = dict.fromkeys(ready_queues)
        if not self._by_task:
            done: frozenset[TaskId] = frozenset()
        elif finished is None:
            done = frozenset(self._by_task)
        else:
            done = frozenset(t for t in finished if t in self._by_task)
        if ordered is None:
            told = frozenset(self._by_worker)
        else:
            told = frozenset(w for w in ordered if w in self._by_worker)
        if loop is None or not (ready is None or ready or done or told):
            return
        records = {t: ended[t] for t in done if t in ended} if ended else {}
        if threading.get_ident() == self._loop_thread:
            # Committed on the loop (SQLite writes in place): no need to wake it up through its
            # self-pipe, which costs two system calls and a loop pass per commit.
            loop.call_soon(self._deliver, ready, done, records, told)
            return
        with suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(self._deliver, ready, done, records, told)

    def _deliver(
        self,
        ready: Mapping[str, int | None] | None,
        finished: frozenset[TaskId],
        records: Mapping[TaskId, Task],
        told: frozenset[WorkerId],
    ) -> None:
        if ready is None:
            for watch in chain(self._any_queue, *self._by_queue.values()):
                if watch.wake is None:
                    _set(watch, Wake.SHARED)
        else:
            for queue, count in ready.items():
                self._wake_ready(queue, count)
        for task_id in finished:
            for watch in self._by_task.get(task_id, ()):
                watch.ended = records.get(task_id)
                watch.event.set()
        for worker_id in told:
            for watch in self._by_worker.get(worker_id, ()):
                watch.event.set()

    def _wake_ready(self, queue: str, count: int | None) -> None:
        """Wake `count` long-polls on `queue` (None: all), asleep ones first. A long-poll that is
        looking already may have looked before the commit: if too few are asleep, it looks
        again, and passes the wake on if it got something else."""
        watches = [
            w for w in chain(self._by_queue.get(queue, ()), self._any_queue) if w.wake is None
        ]
        if count is None:
            for watch in watches:
                _set(watch, Wake.SHARED)
            return
        watches.sort(key=lambda w: not w.idle)
        for watch in watches[:count]:
            _set(watch, Wake.CHOSEN)

    def _pass_on(self, watch: Watch) -> None:
        """Wake every other long-poll on `watch`'s queues: the wake it was given may be theirs."""
        if watch.queues is None:
            others: Iterator[Watch] = chain(self._any_queue, *self._by_queue.values())
        else:
            by_queue = (self._by_queue.get(queue, ()) for queue in watch.queues)
            others = chain(self._any_queue, *by_queue)
        for other in others:
            if other is not watch and other.wake is None:
                _set(other, Wake.SHARED)


def _relay(source: asyncio.Event, target: asyncio.Event) -> asyncio.Task[None]:
    """Set `target` once `source` is set (until the task returned is cancelled): one task for
    the whole poll, where waiting on both at each wait would take two per wait."""

    async def relay() -> None:
        await source.wait()
        target.set()

    return asyncio.ensure_future(relay())


def _set(watch: Watch, wake: Wake) -> None:
    watch.wake = wake
    watch.event.set()


def _discard(index: dict[str, dict[Watch, None]], key: str, watch: Watch) -> None:
    watches = index.get(key)
    if watches is not None:
        watches.pop(watch, None)
        if not watches:
            del index[key]
