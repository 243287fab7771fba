"""Log fields that belong to what is being done rather than to one log call: the id of the HTTP
request being served.

The server binds them (conveyor.server.requestid) for the time of a request; the formatters the
CLI configures (conveyor.cli.logs) add them to every record written meanwhile, including the
records of code that knows nothing of requests (the engine, the store, uvicorn's access log).
A context variable, not a global: concurrent requests each see their own, and engine calls run
in worker threads inherit it (anyio copies the context into them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})
_fields: ContextVar[Mapping[str, str]] = ContextVar("conveyor_log_fields", default=_EMPTY)


def context_fields() -> Mapping[str, str]:
    """The fields bound in the current context (none outside any)."""
    return _fields.get()


@contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Add `fields` to every log record written in this context until the block ends."""
    token = _fields.set(MappingProxyType({**_fields.get(), **fields}))
    try:
        yield
    finally:
        _fields.reset(token)
