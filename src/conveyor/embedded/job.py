"""Job: a task spec for the embedded Scheduler, built from a handler name or a function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conveyor.core.spec import TaskSpec
from conveyor.handlers.naming import handler_name


class Job(TaskSpec):
    """A unit of work for the embedded Scheduler: `Job("sha256", args=["text"], timeout_s=5)`.

    Every TaskSpec option is accepted (timeout_s, run_at, delay_s, max_retries, depends_on,
    priority, queue, resources, key, labels). `depends_on` may name jobs added earlier.
    """

    def __init__(self, handler: str | Callable[..., Any], /, **options: Any) -> None:
        super().__init__(handler=handler_name(handler), **options)
