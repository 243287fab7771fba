"""Storing a planned batch: idempotency keys, external dependencies, initial states."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from conveyor.core.batch import PlannedTask
from conveyor.core.graph import topological_order
from conveyor.core.models import Task
from conveyor.core.refs import rename_refs
from conveyor.core.scheduling import ready_state, start_time
from conveyor.core.states import UNSUCCESSFUL_STATES, Reason, TaskState
from conveyor.core.transitions import move
from conveyor.core.types import JSON, TaskId
from conveyor.engine.events import Changes
from conveyor.engine.limits import hold_on_entry
from conveyor.errors import InvalidSpecError
from conveyor.store.base import StoreTx


def store_batch(
    tx: StoreTx, planned: Sequence[PlannedTask], now: datetime, changes: Changes
) -> list[Task]:
    """Insert the batch's new tasks; return one task per spec, in spec order.

    A spec whose idempotency key is already stored yields the stored task, and the batch's other
    specs that name it depend on the stored task instead.
    """
    keys = [p.spec.key for p in planned if p.spec.key is not None]
    existing_by_key = tx.find_by_keys(keys) if keys else {}
    reused: dict[TaskId, Task] = {
        p.id: existing_by_key[p.spec.key]
        for p in planned
        if p.spec.key is not None and p.spec.key in existing_by_key
    }
    id_map = {new_id: task.id for new_id, task in reused.items()}
    fresh = [p for p in planned if p.id not in reused]
    known = stored_dependencies(tx, fresh, id_map)

    created: dict[TaskId, Task] = {}
    by_id = {p.id: p for p in fresh}
    for task_id in topological_order({p.id: p.depends_on for p in fresh}):
        created[task_id] = _new_task(by_id[task_id], id_map, known, created, now)
    in_order = [created[p.id] for p in fresh]
    hold_on_entry(tx, in_order, now)
    tx.insert_tasks(in_order)
    tx.insert_dependencies([(t.id, dep) for t in in_order for dep in t.depends_on])
    changes.submitted.extend(in_order)
    for task in in_order:
        if task.state is TaskState.QUEUED:
            changes.made_ready(task.queue)
        elif task.state.is_terminal:
            changes.end([task])
    return [reused.get(p.id) or created[p.id] for p in planned]


def stored_dependencies(
    tx: StoreTx,
    fresh: Sequence[PlannedTask],
    id_map: dict[TaskId, TaskId] | None = None,
    *,
    field: str = "depends_on",
) -> dict[TaskId, Task]:
    """The stored tasks that `fresh` depends on outside itself, locked; InvalidSpecError naming
    the task and `field` if one of them does not exist."""
    id_map = id_map or {}
    fresh_ids = {p.id for p in fresh}
    external_ids = {
        id_map.get(dep, dep) for p in fresh for dep in p.depends_on if dep not in fresh_ids
    }
    known = tx.get_tasks(list(external_ids), for_update=True) if external_ids else {}
    for p in fresh:
        for dep in p.depends_on:
            if dep not in fresh_ids and id_map.get(dep, dep) not in known:
                raise InvalidSpecError(
                    f"no task with id or batch name {dep!r}",
                    field=field,
                    task=p.spec.display_name(),
                )
    return known


def _new_task(
    p: PlannedTask,
    id_map: dict[TaskId, TaskId],
    known: dict[TaskId, Task],
    created: dict[TaskId, Task],
    now: datetime,
) -> Task:
    spec = p.spec
    # A reused keyed task may be named both by batch name and by its stored id: wait on it once,
    # or deps_left would count it twice while only one edge releases it.
    depends_on = list(dict.fromkeys(id_map.get(dep, dep) for dep in p.depends_on))
    parents = [created.get(dep) or known[dep] for dep in depends_on]
    failed_parent = next((t for t in parents if t.state in UNSUCCESSFUL_STATES), None)
    deps_left = sum(1 for t in parents if t.state is not TaskState.SUCCEEDED)
    not_before = start_time(spec, now)
    args, kwargs = p.args, p.kwargs
    if p.has_refs and id_map:
        args = cast(list[JSON], rename_refs(args, id_map))
        kwargs = cast(dict[str, JSON], rename_refs(kwargs, id_map))
    task = Task(
        id=p.id,
        handler=spec.handler,
        args=args,
        kwargs=kwargs,
        queue=spec.queue,
        priority=spec.priority,
        state=ready_state(deps_left, not_before, now),
        created_at=now,
        updated_at=now,
        name=spec.name,
        depends_on=depends_on,
        deps_left=deps_left,
        not_before=not_before,
        timeout_s=float(spec.timeout_s) if spec.timeout_s is not None else None,
        max_retries=spec.max_retries,
        retry=spec.retry,
        resources={k: float(v) for k, v in spec.resources.items()},
        key=spec.key,
        labels=dict(spec.labels),
        limits=p.limits,
        has_refs=p.has_refs,
        require=dict(spec.require),
        prefer=dict(spec.prefer),
    )
    if failed_parent is not None:
        move(task, TaskState.FAILED, now)
        task.reason = Reason.DEPENDENCY_FAILED
        task.error = (
            f"dependency {failed_parent.name or failed_parent.id} ended {failed_parent.state.value}"
        )
        task.finished_at = now
    return task
