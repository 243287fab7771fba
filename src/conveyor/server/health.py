"""What /health says: whether this server can read its database, and write to it.

/health is open (load balancers ask without a token), so its answer says *that* something is
wrong in general words; the database's own message, which can name files, hosts and users, goes
to the server's log.

- Reading: one cheap read at each request.
- Writing: a probe cannot tell a full disk from a nearly full one (SQLite writes into the room its
  files already have, and a small probe fits where a task does not), so the server watches its
  own writes instead (`StoreHealth`, fed by `ServerContext.write`, the path every submit, lease
  and report takes). After a write fails for another reason than a busy database or data it
  refuses, /health answers 503 until a write succeeds again, or until RECENT_S have passed
  without another failure (a server taken out of rotation gets no writes to prove itself with;
  once back, a write that fails again takes it out again).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable

from conveyor.api.schemas import HealthOut
from conveyor.errors import StoreBusyError, StoreError, StoreRefusedError

log = logging.getLogger(__name__)

RECENT_S = 30.0


class StoreHealth:
    """The outcome of the server's latest writes. Thread-safe."""

    def __init__(
        self, recent_s: float = RECENT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.recent_s = recent_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_at: float | None = None

    def write_failed(self, exc: BaseException) -> None:
        """A write raised `exc`; only a store that fails counts (not busy, not refused data)."""
        if not isinstance(exc, StoreError) or isinstance(exc, StoreBusyError | StoreRefusedError):
            return
        with self._lock:
            first = self._failed_at is None
            self._failed_at = self._clock()
        if first:
            log.warning("a database write failed; /health answers 503 until one succeeds: %s", exc)

    def write_succeeded(self) -> None:
        if self._failed_at is not None:
            with self._lock:
                self._failed_at = None
            log.warning("database writes succeed again; /health answers 200")

    def write_problem(self) -> str | None:
        """Why writes look broken, in words fit for anyone; None when they do not."""
        with self._lock:
            failed_at = self._failed_at
            if failed_at is None:
                return None
            ago_s = self._clock() - failed_at
            if ago_s > self.recent_s:
                self._failed_at = None
                return None
        return (
            f"the database refused a write {math.ceil(ago_s)} s ago and none has succeeded "
            "since; the server's log says why"
        )


async def check(
    read: Callable[[], Awaitable[object]], health: StoreHealth, *, version: str, store: str
) -> tuple[bool, HealthOut]:
    """(healthy, the answer): `read` makes one cheap read of the store."""
    try:
        await read()
    except Exception as exc:  # any failure to read is "unhealthy", never a 500
        log.warning("/health could not read the database: %s", exc)
        problem: str | None = "the database cannot be read; the server's log says why"
    else:
        problem = health.write_problem()
    if problem is not None:
        return False, HealthOut(status=f"unavailable: {problem}", version=version, store=store)
    return True, HealthOut(status="ok", version=version, store=store)
