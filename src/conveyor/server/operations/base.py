"""What an operation's implementation receives and returns, whatever the transport."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from conveyor.api.operations import Operation


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with a status other than the operation's usual one (`Operation.status`)."""

    status: int
    body: BaseModel | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """The call being served, as far as an implementation needs to know it."""

    gone: Callable[[], Awaitable[None]]
    """Returns once the caller has gone away (its connection closed): a long poll then ends,
    so that it does not lease tasks nobody will run."""
    push: Callable[[BaseModel], Awaitable[None]] | None = None
    """Sends an answer ahead of the call's last one, where the transport can (the persistent
    connection); None elsewhere, and an operation that may answer more than once (a following
    lease) then answers once."""
    stopped: asyncio.Event | None = None
    """Set when the caller asks a call that answers more than once to end early: it grants
    nothing more and sends its last answer."""


class CallerGone(Exception):
    """The caller went away before its answer: there is nobody to send one to."""


Handler = Callable[..., Awaitable[Any]]
"""`async (ctx, caller, params, body) -> BaseModel | Answer | None` for operations with a body,
`async (ctx, caller, params) -> ...` for those without."""

HANDLERS: dict[str, Handler] = {}


def implements(operation: Operation) -> Callable[[Handler], Handler]:
    """Register the decorated function as `operation`'s one implementation."""

    def register(handler: Handler) -> Handler:
        known = HANDLERS.get(operation.name)
        # The same function again is its module imported anew (after an import failed half-way).
        if known is not None and (known.__module__, known.__qualname__) != (
            handler.__module__,
            handler.__qualname__,
        ):
            raise RuntimeError(f"operation {operation.name!r} is implemented twice")
        HANDLERS[operation.name] = handler
        return handler

    return register
