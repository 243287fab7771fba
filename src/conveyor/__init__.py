"""Conveyor: a durable, distributed task scheduler for Python.

```python
from conveyor import Client, TaskSpec, task

@task(timeout_s=60)
def resize(path: str, width: int) -> str:
    return f"{path}@{width}"

with Client("http://127.0.0.1:8000") as client:
    job = client.submit(resize, "cat.png", 640)
    print(client.result(job.id, timeout_s=120).result)
```

Everything a user of the SDK or of embedded mode handles is here: the clients and the `task`
decorator, the task spec, the embedded `Scheduler` and `Job`, the answers the clients return,
the states, and every error (`ConveyorError` and its tree, drawn in `conveyor.errors`).
Subpackages hold the rest: `conveyor.client`, `conveyor.embedded`, `conveyor.testing`,
`conveyor.server`, `conveyor.worker`.

Each name is imported when it is first used, not by `import conveyor`: every Conveyor process
imports this package first (the CLI, each worker, every task's process), and most need neither
the HTTP client nor the engine, which take a second to import.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from conveyor.api.schedules import ScheduleOut
    from conveyor.api.schemas import (
        AttemptOut,
        HealthOut,
        MonitorOut,
        ResultOut,
        StatusOut,
        TaskDetail,
        TaskOut,
        TaskPage,
        WorkerOut,
    )
    from conveyor.client import AsyncClient, Client, TaskFunction, task
    from conveyor.core.schedules import Misfire
    from conveyor.core.spec import RetryPolicy, TaskSpec
    from conveyor.core.states import Outcome, Reason, TaskState
    from conveyor.core.why import WaitCode, WaitReason, WhyAnswer
    from conveyor.embedded import Job, Progress, RunSummary, Scheduler
    from conveyor.errors import (
        ConflictError,
        ConveyorError,
        CycleError,
        DuplicateKeyError,
        HandlerError,
        InvalidSpecError,
        NotFoundError,
        ServerUnavailableError,
        StaleTokenError,
        StoreBusyError,
        StoreError,
        StoreRefusedError,
    )
    from conveyor.store import Durability

__all__ = [
    "AsyncClient",
    "AttemptOut",
    "Client",
    "ConflictError",
    "ConveyorError",
    "CycleError",
    "DuplicateKeyError",
    "Durability",
    "HandlerError",
    "HealthOut",
    "InvalidSpecError",
    "Job",
    "Misfire",
    "MonitorOut",
    "NotFoundError",
    "Outcome",
    "Progress",
    "Reason",
    "ResultOut",
    "RetryPolicy",
    "RunSummary",
    "ScheduleOut",
    "Scheduler",
    "ServerUnavailableError",
    "StaleTokenError",
    "StatusOut",
    "StoreBusyError",
    "StoreError",
    "StoreRefusedError",
    "TaskDetail",
    "TaskFunction",
    "TaskOut",
    "TaskPage",
    "TaskSpec",
    "TaskState",
    "WaitCode",
    "WaitReason",
    "WhyAnswer",
    "WorkerOut",
    "task",
]

_HOMES = {
    "AsyncClient": "conveyor.client",
    "AttemptOut": "conveyor.api.schemas",
    "Client": "conveyor.client",
    "ConflictError": "conveyor.errors",
    "ConveyorError": "conveyor.errors",
    "CycleError": "conveyor.errors",
    "DuplicateKeyError": "conveyor.errors",
    "Durability": "conveyor.store",
    "HandlerError": "conveyor.errors",
    "HealthOut": "conveyor.api.schemas",
    "InvalidSpecError": "conveyor.errors",
    "Job": "conveyor.embedded",
    "Misfire": "conveyor.core.schedules",
    "MonitorOut": "conveyor.api.schemas",
    "NotFoundError": "conveyor.errors",
    "Outcome": "conveyor.core.states",
    "Progress": "conveyor.embedded",
    "Reason": "conveyor.core.states",
    "ResultOut": "conveyor.api.schemas",
    "RetryPolicy": "conveyor.core.spec",
    "RunSummary": "conveyor.embedded",
    "ScheduleOut": "conveyor.api.schedules",
    "Scheduler": "conveyor.embedded",
    "ServerUnavailableError": "conveyor.errors",
    "StaleTokenError": "conveyor.errors",
    "StatusOut": "conveyor.api.schemas",
    "StoreBusyError": "conveyor.errors",
    "StoreError": "conveyor.errors",
    "StoreRefusedError": "conveyor.errors",
    "TaskDetail": "conveyor.api.schemas",
    "TaskFunction": "conveyor.client",
    "TaskOut": "conveyor.api.schemas",
    "TaskPage": "conveyor.api.schemas",
    "TaskSpec": "conveyor.core.spec",
    "TaskState": "conveyor.core.states",
    "WaitCode": "conveyor.core.why",
    "WaitReason": "conveyor.core.why",
    "WhyAnswer": "conveyor.core.why",
    "WorkerOut": "conveyor.api.schemas",
    "task": "conveyor.client",
}
"""Where each public name lives; the imports above say the same to type checkers, and
tests/unit/test_exported_members.py holds the two together."""

if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: with a module __getattr__ in sight, mypy would accept any
    # misspelt name imported from conveyor.

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
        value = getattr(_importlib.import_module(home), name)
        globals()[name] = value  # the next lookup finds it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
