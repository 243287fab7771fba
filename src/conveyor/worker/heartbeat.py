"""The heartbeat thread: keeps the worker and its leases alive, and carries the server's orders.

Every `heartbeat_interval_s` it sends the leases the worker holds and the host's metrics. The
answer lists tasks to stop (cancelled by a user, or whose lease went elsewhere): they are killed
at once. `drain` asks the worker to shut down, and `hand_back` with it to give its running tasks
back at once (an operator stopped it).

The server holds an answer with nothing to say for up to the interval, and sends it the moment
a task the worker runs is cancelled or the worker is told to drain or stop: so an order takes
effect at once, not at the next heartbeat. The next heartbeat still leaves one interval after
this one did, so the leases are extended as often as ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psutil

from conveyor.client.worker_api import WorkerConnection
from conveyor.core.types import JSON
from conveyor.errors import ConflictError, ConveyorError, NotFoundError
from conveyor.hostmetrics import SystemMetrics
from conveyor.worker.backoff import TRANSIENT_ERRORS
from conveyor.worker.bookkeeping import Bookkeeping, Lease, start_by
from conveyor.worker.registration import Registration

log = logging.getLogger(__name__)


class Heartbeater:
    def __init__(
        self,
        conn: WorkerConnection,
        registration: Registration,
        books: Bookkeeping,
        metrics: SystemMetrics,
        *,
        stop_leases: Callable[[list[Lease]], None],
        halt: threading.Event,
        on_drain: Callable[[str, bool], None],
    ) -> None:
        self._conn = conn
        self._registration = registration
        self._books = books
        self._stop_leases = stop_leases
        self._metrics = metrics
        self._halt = halt
        self._on_drain = on_drain
        self._unreachable = False

    def run(self) -> None:
        pause_s = 0.0  # the first at once: from then on an order reaches the worker at once
        while not self._halt.wait(pause_s):
            interval_s = self._registration.heartbeat_interval_s
            began = time.monotonic()
            wait_s = hold_s(interval_s, self._registration.lease_s)
            self.beat(wait_s=wait_s)
            if wait_s and time.monotonic() - began < wait_s / 2 and not self._halt.is_set():
                # Answered early: an order came (or the call failed at once). Its answer named
                # only the tasks this beat listed; one leased meanwhile is named by a beat that
                # lists it. At most two beats an interval, whatever the server does.
                self.beat()
            pause_s = max(0.0, interval_s - (time.monotonic() - began))

    def beat(self, *, wait_s: float = 0.0) -> None:
        worker_id = self._registration.id
        sent_at = time.monotonic()  # before the server reads its clock to extend the leases
        held = self._books.held_leases()
        try:
            answer = self._conn.heartbeat(worker_id, held, self._sample(), wait_s=wait_s)
        except (NotFoundError, ConflictError):
            if self._halt.is_set():
                return  # the worker deregistered itself as it exits: nothing to renew
            # Declared dead (each task goes back to the queue as its lease runs out) or removed
            # (they went back at once): nothing extends this identity's leases any more. renew()
            # stops them all rather than run on as zombies, then registers anew.
            self._registration.renew(worker_id)
            return
        except ConveyorError as exc:
            # Running tasks keep running: the server may be back before their leases expire.
            if not self._unreachable:
                level = logging.WARNING if isinstance(exc, TRANSIENT_ERRORS) else logging.ERROR
                log.log(level, f"heartbeat failed: {exc}", extra={"worker_id": worker_id})
            self._unreachable = True
            return
        if self._unreachable:
            log.warning("the server answers heartbeats again", extra={"worker_id": worker_id})
            self._unreachable = False
        # `stop` names tasks; `held` has at most one lease per task (bookkeeping voids a
        # task's older leases), so each name means exactly the lease this heartbeat listed.
        stopped = set(answer.stop)
        self._books.extended(
            (lease for lease in held if lease[0] not in stopped),
            start_by=start_by(sent_at, answer.lease_s),
        )
        void = self._books.void(lease for lease in held if lease[0] in stopped)
        if void:
            log.info(
                "the server stopped tasks; killing them",
                extra={
                    "worker_id": worker_id,
                    "count": len(void),
                    "task_ids": [task_id for task_id, _ in void],
                },
            )
            self._stop_leases(void)
        if answer.drain and answer.hand_back:
            self._on_drain("the server asked this worker to stop", True)
        elif answer.drain:
            self._on_drain("the server asked this worker to drain", False)

    def _sample(self) -> dict[str, JSON] | None:
        try:
            return self._metrics.sample()
        except (OSError, psutil.Error) as exc:
            # Metrics are a courtesy; the heartbeat itself is what keeps the leases.
            log.debug("reading system metrics failed", extra={"error": str(exc)})
            return None


def hold_s(interval_s: float, lease_s: float) -> float:
    """How long the server may hold a heartbeat that has nothing to say: the interval, but no
    longer than leaves the worker knowing of each extension well before the lease it extends
    would run out (a lease taken just after one heartbeat left is extended by the next, whose
    answer comes back up to this much later)."""
    return max(0.0, min(interval_s, lease_s / 2 - interval_s))
