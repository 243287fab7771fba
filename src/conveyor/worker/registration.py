"""The worker's identity on the server, and getting a new one when the server forgets the old.

A server that has not heard from a worker for a while declares it dead: it extends none of its
leases any more, and runs each of its tasks elsewhere once the lease is over; an admin who
deregisters a worker puts its tasks back in the queue at once. When the worker is heard from
again (a 404 or 409 to any call) every lease it held under the old id is void: renew() hands
them to `on_forgotten`, which kills their executions, before it registers anew, so that the
new identity, which may well lease the same tasks again, never runs a second copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from conveyor.api.schemas import RegisterIn
from conveyor.client.worker_api import WorkerConnection
from conveyor.worker.backoff import TRANSIENT_ERRORS, Backoff

log = logging.getLogger(__name__)


class Registration:
    """`id`, `heartbeat_interval_s` and `lease_s` as the server last granted them.

    Any thread may read them; register() and renew() serialise on a lock, so threads that all
    find the identity stale at once register only once.
    """

    def __init__(
        self,
        conn: WorkerConnection,
        request: RegisterIn,
        stop: threading.Event,
        *,
        on_forgotten: Callable[[str], None] = lambda worker_id: None,
    ) -> None:
        self._conn = conn
        self._request = request
        self._stop = stop
        self._on_forgotten = on_forgotten
        self._lock = threading.Lock()
        self.id = ""
        self.heartbeat_interval_s = 5.0
        self.lease_s = 30.0

    def register(self) -> bool:
        """Register, retrying for as long as the server is unreachable. False if stopped first.

        Other errors (a refused token, an invalid queue name) are raised: retrying cannot help.
        """
        with self._lock:
            return self._register()

    def renew(self, stale_id: str) -> bool:
        """Register again unless another thread already replaced `stale_id`. False if stopped."""
        with self._lock:
            if self.id != stale_id:
                return not self._stop.is_set()
            log.warning(
                "the server no longer knows this worker; registering again",
                extra={"worker_id": stale_id},
            )
            self._on_forgotten(stale_id)
            return self._register()

    def _register(self) -> bool:
        backoff = Backoff(first_s=0.5, max_s=15.0)
        while not self._stop.is_set():
            try:
                answer = self._conn.register(self._request)
            except TRANSIENT_ERRORS as exc:
                delay_s = backoff.next_delay_s(exc.retry_after_s)
                log.warning(
                    "cannot register; retrying",
                    extra={
                        "error": str(exc),
                        "server": self._conn.url,
                        "retry_in_s": round(delay_s, 1),
                    },
                )
                self._stop.wait(delay_s)
                continue
            self.id = answer.id
            self.heartbeat_interval_s = answer.heartbeat_interval_s
            self.lease_s = answer.lease_s
            log.info(
                "registered",
                extra={
                    "worker_id": answer.id,
                    "worker_name": self._request.name,
                    "server": self._conn.url,
                },
            )
            return True
        return False
