"""`@task`: mark a module-level function as a task, with default options for its submissions.

```python
@task(queue="reports", timeout_s=60, max_retries=2)
def render(report_id: int) -> str: ...

render(7)                           # still a plain call, in this process
client.submit(render, 7)            # runs on a worker, with the defaults above
client.submit(render, 7, queue="urgent")   # any default can be overridden per submission
```
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar, Unpack, overload

from conveyor.client.specs import SpecOptions, make_spec
from conveyor.core.spec import TaskSpec
from conveyor.core.types import JSON
from conveyor.errors import InvalidSpecError
from conveyor.handlers.naming import handler_name

P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A function marked with `@task`: callable as before, and submittable by name.

    A worker imports it as `module:qualname`, which names this wrapper; calling the wrapper
    calls the function, so the worker runs exactly what the module defines.
    """

    def __init__(self, fn: Callable[P, R], options: SpecOptions) -> None:
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @property
    def handler(self) -> str:
        """The handler name workers import: `module:qualname`.

        Raises InvalidSpecError for a function a worker could not import (defined in
        `__main__` or inside another function).
        """
        try:
            return handler_name(self.fn)
        except ValueError as exc:
            raise InvalidSpecError(str(exc), field="handler") from None

    def spec(self, *args: JSON, **overrides: Unpack[SpecOptions]) -> TaskSpec:
        """A TaskSpec calling this function with `args`; the decorator's options, overridden."""
        return make_spec(
            {"handler": self.handler, "args": list(args)}, {**self.options, **overrides}
        )

    def __repr__(self) -> str:
        return f"<task {self.fn.__module__}:{self.fn.__qualname__}>"


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


@overload
def task(**options: Unpack[SpecOptions]) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, **options: Unpack[SpecOptions]
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Mark a function as a task: `@task` or `@task(queue=..., priority=..., timeout_s=...)`.

    Options are any TaskSpec field but handler and args; they are checked here, so a typo fails
    at import time rather than at the first submission.
    """
    # Validated against a stand-in handler: the function's own name is checked at submit time.
    make_spec({"handler": "echo"}, options)

    def decorate(function: Callable[P, R]) -> TaskFunction[P, R]:
        return TaskFunction(function, options)

    return decorate if fn is None else decorate(fn)
