"""The server's implementation of every operation (conveyor.api.operations), one function each.

Each module implements a group of operations with `@implements(OPERATION)`; the transports
(REST in conveyor.server.rest, the persistent connection in conveyor.server.stream) call them
through `HANDLERS`, so an operation behaves the same whichever way it arrives. `handlers()`
checks that every declared operation has exactly one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.api.operations import OPERATIONS
from conveyor.server.operations.base import (
    HANDLERS,
    Answer,
    Caller,
    CallerGone,
    Handler,
    implements,
)

__all__ = ["Answer", "Caller", "CallerGone", "Handler", "handlers", "implements"]


def handlers() -> Mapping[str, Handler]:
    """Every operation's implementation by name; raises if one is missing."""
    from conveyor.server.operations import (  # noqa: F401
        bulk,
        control,
        limits,
        schedules,
        system,
        tasks,
        views,
        workers,
    )

    missing = sorted(set(OPERATIONS) - set(HANDLERS))
    if missing:
        raise RuntimeError(f"operations without an implementation: {', '.join(missing)}")
    return HANDLERS
