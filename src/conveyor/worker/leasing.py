"""The leaser thread: long-polls the server for as many tasks as the worker has room for.

Leasing runs in its own thread so that a long-poll, which may sit on the server for many
seconds, never delays the main thread, which must collect results and enforce timeouts the
moment they are due. Assignments go to the main thread through a queue, with pool.wake() to
interrupt its wait: ProcessPool.start() belongs to the main thread alone.

Room is the free slots plus the prefetch (WorkerConfig.prefetch says how much). Once tasks
wait prefetched, it leases again only when half the prefetch fits or none waits any more, so
that one call carries several tasks. When there is no room it does not poll at all; it sleeps
until the main thread frees some.

On the persistent connection a lease call follows (LeaseIn.follow): tasks that get ready one at
a time come as answers of the same call, up to the room it asked for, instead of a call each.
Its room was counted when it was sent, so it never brings more than a plain call could have.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from conveyor.api.schemas import AssignmentOut, LeaseOut
from conveyor.client.worker_api import WorkerConnection
from conveyor.errors import ConflictError, ConveyorError, InvalidSpecError, NotFoundError
from conveyor.executor import ProcessPool
from conveyor.worker.backoff import TRANSIENT_ERRORS, Backoff
from conveyor.worker.bookkeeping import Bookkeeping, Lease, start_by
from conveyor.worker.registration import Registration

log = logging.getLogger(__name__)


class Leaser:
    def __init__(
        self,
        conn: WorkerConnection,
        registration: Registration,
        books: Bookkeeping,
        pool: ProcessPool,
        inbox: queue.SimpleQueue[AssignmentOut],
        *,
        stop_leases: Callable[[list[Lease]], None],
        queues: Sequence[str],
        wait_s: float,
        burst: bool,
        halt: threading.Event,
        on_burst_done: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._registration = registration
        self._books = books
        self._pool = pool
        self._inbox = inbox
        self._stop_leases = stop_leases
        self._queues = list(queues)
        # Burst mode must learn at once that the queue is empty; it waits on its own tasks instead.
        self._wait_s = 0.0 if burst else wait_s
        self._burst = burst
        self._halt = halt
        self._on_burst_done = on_burst_done
        self._backoff = Backoff()
        # A burst decides on one answer whether it is done: it never follows.
        self._follow = not burst

    def run(self) -> None:
        while True:
            room = self._books.wait_for_room()
            if room == 0:
                return  # leasing has stopped: draining or shutting down
            # Both read before the call: an empty answer while idle is what ends a burst.
            idle, settled = self._books.idle(), self._books.settled_count()
            asked_at = time.monotonic()
            worker_id = self._registration.id
            leased = self._lease(worker_id, room, asked_at)
            if leased is None or leased:
                continue
            if self._burst:
                if idle:
                    self._on_burst_done()
                    return
                # Tasks of ours are running: what they report may make new tasks ready.
                self._books.wait_for_settlement(settled)
            elif time.monotonic() - asked_at < self._wait_s / 2:
                # The server answered at once instead of holding the poll (draining, say):
                # wait a little rather than ask again in a tight loop.
                self._halt.wait(self._backoff.next_delay_s())

    def _take(self, answer: LeaseOut, asked_at: float, worker_id: str) -> None:
        """Hand the answer's tasks to the main thread."""
        superseded = self._books.leased(
            answer.tasks,
            start_by=start_by(asked_at + answer.waited_s, answer.lease_s),
            worker_id=worker_id,
        )
        if superseded:
            log.info(
                "leases superseded or held under a forgotten registration; killing "
                "their executions",
                extra={"worker_id": worker_id, "count": len(superseded), "leases": superseded},
            )
            self._stop_leases(superseded)
        for task in answer.tasks:
            self._inbox.put(task)
        self._pool.wake()
        self._backoff.reset()

    def _lease(self, worker_id: str, room: int, asked_at: float) -> int | None:
        """One lease call for up to `room` tasks, its tasks handed on as they come: one answer,
        or on the persistent connection one per task or group of tasks as they get ready (a
        following lease: one call for many tasks). Returns how many it brought; None after an
        error before any (retry after the delay it set)."""
        leased = 0
        try:
            answers = self._conn.leases(
                worker_id, room, wait_s=self._wait_s, queues=self._queues,
                free=self._books.free_resources(), follow=self._follow,
            )  # fmt: skip
            for answer in answers:
                leased += len(answer.tasks)
                if answer.tasks:
                    self._take(answer, asked_at, worker_id)
                    if self._books.full():
                        answers.stop()  # the room shrank meanwhile: the rest would wait here
            return leased
        except (NotFoundError, ConflictError):
            if self._books.leasing:
                self._registration.renew(worker_id)
            return leased or None
        except InvalidSpecError as exc:
            if not self._follow:
                raise
            # A server that does not know following leases refuses the field: lease a call
            # at a time from now on.
            self._follow = False
            log.warning("the server refused a following lease", extra={"error": str(exc)})
            return leased or None
        except TRANSIENT_ERRORS as exc:
            delay_s = self._backoff.next_delay_s(exc.retry_after_s)
            log.warning(
                "leasing failed; retrying", extra={"error": str(exc), "retry_in_s": delay_s}
            )
        except ConveyorError as exc:
            delay_s = self._backoff.next_delay_s()
            log.error("leasing failed; retrying", extra={"error": str(exc), "retry_in_s": delay_s})
        self._halt.wait(delay_s)
        return leased or None
