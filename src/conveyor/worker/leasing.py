"""The leaser thread: long-polls the server for as many tasks as the worker has room for.

Leasing runs in its own thread so that a long-poll, which may sit on the server for many
seconds, never delays the main thread, which must collect results and enforce timeouts the
moment they are due. Assignments go to the main thread through a queue, with pool.wake() to
interrupt its wait: ProcessPool.start() belongs to the main thread alone.

Room is the free slots plus the prefetch (WorkerConfig.prefetch says how much). Once tasks
wait prefetched, it leases again only when half the prefetch fits or none waits any more, so
that one call carries several tasks. When there is no room it does not poll at all; it sleeps
until the main thread frees some.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from conveyor.api.schemas import AssignmentOut, LeaseOut
from conveyor.client.worker_api import WorkerConnection
from conveyor.errors import ConflictError, ConveyorError, NotFoundError
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

    def run(self) -> None:
        while True:
            room = self._books.wait_for_room()
            if room == 0:
                return  # leasing has stopped: draining or shutting down
            # Both read before the call: an empty answer while idle is what ends a burst.
            idle, settled = self._books.idle(), self._books.settled_count()
            asked_at = time.monotonic()
            worker_id = self._registration.id
            answer = self._lease(worker_id, room)
            if answer is None:
                continue
            tasks = answer.tasks
            if tasks:
                superseded = self._books.leased(
                    tasks,
                    start_by=start_by(asked_at + answer.waited_s, answer.lease_s),
                    worker_id=worker_id,
                )
                if superseded:
                    log.info(
                        "leases superseded or held under a forgotten registration; killing "
                        "their executions",
                        extra={
                            "worker_id": worker_id,
                            "count": len(superseded),
                            "leases": superseded,
                        },
                    )
                    self._stop_leases(superseded)
                for task in tasks:
                    self._inbox.put(task)
                self._pool.wake()
                self._backoff.reset()
            elif self._burst:
                if idle:
                    self._on_burst_done()
                    return
                # Tasks of ours are running: what they report may make new tasks ready.
                self._books.wait_for_settlement(settled)
            elif time.monotonic() - asked_at < self._wait_s / 2:
                # The server answered at once instead of holding the poll (draining, say):
                # wait a little rather than ask again in a tight loop.
                self._halt.wait(self._backoff.next_delay_s())

    def _lease(self, worker_id: str, room: int) -> LeaseOut | None:
        """Up to `room` tasks; None after an error (retry after the delay it set)."""
        try:
            return self._conn.lease(
                worker_id,
                room,
                wait_s=self._wait_s,
                queues=self._queues,
                free=self._books.free_resources(),
            )
        except (NotFoundError, ConflictError):
            if self._books.leasing:
                self._registration.renew(worker_id)
            return None
        except TRANSIENT_ERRORS as exc:
            delay_s = self._backoff.next_delay_s(exc.retry_after_s)
            log.warning(
                "leasing failed; retrying", extra={"error": str(exc), "retry_in_s": delay_s}
            )
        except ConveyorError as exc:
            delay_s = self._backoff.next_delay_s()
            log.error("leasing failed; retrying", extra={"error": str(exc), "retry_in_s": delay_s})
        self._halt.wait(delay_s)
        return None
