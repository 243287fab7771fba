"""Every error Conveyor raises on purpose derives from ConveyorError.

```
ConveyorError
├── InvalidSpecError        a task spec or job file is malformed (names the field)
│   └── CycleError          depends_on forms a cycle
├── NotFoundError           no such task or worker
├── ConflictError           the operation does not fit the current state
│   ├── StaleTokenError     a report or heartbeat carried an outdated fencing token
│   └── DuplicateKeyError   a concurrent transaction stored the same unique value first
├── HandlerError            a handler is unknown, refused by policy, or failed to load
├── StoreError              the store failed (driver error kept as __cause__)
│   ├── StoreBusyError      locked or overloaded: try again later
│   └── StoreRefusedError   the data cannot be stored, ever: retrying will not help
└── ServerUnavailableError  (clients) the server cannot be reached, or answered 5xx
```
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ConveyorError",
    "CycleError",
    "DuplicateKeyError",
    "HandlerError",
    "InvalidSpecError",
    "NotFoundError",
    "ServerUnavailableError",
    "StaleTokenError",
    "StoreBusyError",
    "StoreError",
    "StoreRefusedError",
]


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""


class InvalidSpecError(ConveyorError, ValueError):
    """A task spec, batch or job file is malformed."""

    def __init__(self, message: str, *, field: str | None = None, task: str | None = None) -> None:
        self.field = field
        self.task = task
        where = ", ".join(
            part
            for part in (f"task {task!r}" if task else "", f"field {field!r}" if field else "")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message


class CycleError(InvalidSpecError):
    """depends_on forms a cycle; `cycle` lists the tasks on it."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join([*cycle, cycle[0]]), field="depends_on")


class NotFoundError(ConveyorError, LookupError):
    """No task or worker with that id."""


class ConflictError(ConveyorError):
    """The operation does not fit the task's or worker's current state."""


class StaleTokenError(ConflictError):
    """A report carried a fencing token that is no longer the task's current lease."""


class DuplicateKeyError(ConflictError):
    """Another transaction stored the same unique value (an idempotency key) first."""


class HandlerError(ConveyorError):
    """A handler is unknown, refused by the worker's policy, or could not be loaded."""


class StoreError(ConveyorError):
    """The store failed; the driver's exception is kept as __cause__."""


class StoreBusyError(StoreError):
    """The store is locked or overloaded; the operation changed nothing. Retry later."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreRefusedError(StoreError):
    """The store refuses the data itself (text with no UTF-8 form, a value out of its range):
    the same data would be refused again. The operation changed nothing."""


class ServerUnavailableError(ConveyorError):
    """A client could not reach the server, or the server could not serve the request now."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
