"""The calls of bulk actions (retry, cancel or delete every task a filter selects), built from
the operations' declarations as `calls.py` builds the others, for Client and AsyncClient alike.

```python
with Client() as client:
    action = client.retry_all(state="failed", queue="emails")
    done = client.wait_bulk(action, on_progress=lambda a: print(a.changed, "of", a.estimate))
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

from conveyor.api import operations as ops
from conveyor.api.params import BulkRef
from conveyor.api.schemas import BulkIn, BulkOut
from conveyor.client.calls import MAX_RESULT_WAIT_S, Call, Steps
from conveyor.core.bulk import BulkAction
from conveyor.core.states import Reason, TaskState
from conveyor.core.validation import validated

PROGRESS_EVERY_S = 1.0
"""How often `wait_bulk` reports progress: the server holds each look up to this long, and
answers at once when the action ends."""


class Selection(TypedDict, total=False):
    """The tasks a bulk action is for, as keyword arguments: every task that meets all the
    criteria given (at least one). Time ranges include their start and exclude their end."""

    state: TaskState | str | Iterable[TaskState | str]
    queue: str
    name: str
    handler: str
    labels: Mapping[str, str]
    reason: Reason | str
    error: str
    """The error message, exactly (the empty text: tasks without one)."""
    ids: Iterable[str]
    created_after: datetime | str
    created_before: datetime | str
    finished_after: datetime | str
    finished_before: datetime | str


def bulk_action(
    action: BulkAction,
    where: Selection,
    *,
    dry_run: bool = False,
    key: str | None = None,
    chunk_size: int | None = None,
) -> Call[BulkOut]:
    """Start `action` on the tasks `where` selects (or, with `dry_run`, count them)."""
    selection: dict[str, Any] = dict(where)
    state = selection.get("state")
    if isinstance(state, str):
        selection["state"] = [state]
    elif state is not None:
        selection["state"] = list(state)
    if "ids" in selection:
        selection["ids"] = list(selection["ids"])
    body: dict[str, Any] = {"action": action, "filter": selection, "dry_run": dry_run, "key": key}
    if chunk_size is not None:
        body["chunk_size"] = chunk_size
    return Call(
        ops.BULK_ACTION,
        BulkOut.model_validate_json,
        body=validated(BulkIn, body),
        idempotent=key is not None or dry_run,  # a key makes asking twice the same as once
    )


def get_bulk(bulk_id: str, wait_s: float = 0.0) -> Call[BulkOut]:
    wait_s = round(min(max(wait_s, 0.0), MAX_RESULT_WAIT_S), 3)
    return Call(ops.GET_BULK, BulkOut.model_validate_json, BulkRef(bulk_id=bulk_id, wait=wait_s))


def wait_for_bulk(
    bulk_id: str,
    *,
    timeout_s: float | None,
    clock: Callable[[], float],
    on_progress: Callable[[BulkOut], object] | None = None,
) -> Steps[BulkOut]:
    """The action once it is done, or as it is after `timeout_s` (None: as long as it takes);
    `on_progress` gets each answer on the way, about every PROGRESS_EVERY_S."""
    give_up_at = None if timeout_s is None else clock() + max(timeout_s, 0.0)
    while True:
        left_s = PROGRESS_EVERY_S if give_up_at is None else give_up_at - clock()
        answer: BulkOut = yield get_bulk(bulk_id, max(0.0, min(left_s, PROGRESS_EVERY_S)))
        if on_progress is not None:
            on_progress(answer)
        if answer.done or (give_up_at is not None and clock() >= give_up_at):
            return answer
