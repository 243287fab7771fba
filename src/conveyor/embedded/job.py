"""Job: a task spec for the embedded Scheduler, built from a handler name or a function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conveyor.core.spec import TaskSpec


def handler_name(handler: str | Callable[..., Any]) -> str:
    """A registered name stays as it is; a module-level function becomes `module:qualname`."""
    if isinstance(handler, str):
        return handler
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"{handler!r} cannot be imported by a child process; define it at module level "
            "in an importable module, or pass its 'package.module:function' path"
        )
    return f"{module}:{qualname}"


class Job(TaskSpec):
    """A unit of work for the embedded Scheduler: `Job("sha256", args=["text"], timeout_s=5)`.

    Every TaskSpec option is accepted (timeout_s, run_at, delay_s, max_retries, depends_on,
    priority, queue, resources, key, labels). `depends_on` may name jobs added earlier.
    """

    def __init__(self, handler: str | Callable[..., Any], /, **options: Any) -> None:
        super().__init__(handler=handler_name(handler), **options)
