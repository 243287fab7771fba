"""How long to wait before calling an unreachable server again: exponential, capped, jittered.

The same curve as a task's retry backoff (core.retry), so many workers that lost their server
at the same moment do not all call it again at the same moment.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from conveyor.core.retry import backoff_delay_s
from conveyor.core.spec import RetryPolicy
from conveyor.errors import ServerUnavailableError, StoreBusyError

TRANSIENT_ERRORS = (ServerUnavailableError, StoreBusyError)
"""The server is unreachable or busy: the same call may well succeed a little later."""


class Backoff:
    """Counts failures in a row; `next_delay_s()` grows with them, `reset()` after a success."""

    def __init__(
        self,
        first_s: float = 0.2,
        max_s: float = 10.0,
        *,
        jitter: float = 0.5,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._policy = RetryPolicy(backoff_s=first_s, backoff_max_s=max_s, jitter=jitter)
        self._random_fraction = random_fraction
        self.failures = 0

    def next_delay_s(self, retry_after_s: float | None = None) -> float:
        """The wait before the next try; never shorter than the server's Retry-After."""
        self.failures += 1
        delay_s = backoff_delay_s(self._policy, self.failures, self._random_fraction())
        return max(delay_s, retry_after_s or 0.0)

    def reset(self) -> None:
        self.failures = 0
