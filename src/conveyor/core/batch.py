"""Planning a batch: ids for new tasks, names resolved to ids, implicit dependencies, cycles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from conveyor.core.graph import check_acyclic
from conveyor.core.limiting import LimitKeyError, expand_limits
from conveyor.core.refs import find_refs, rename_refs
from conveyor.core.spec import TaskSpec
from conveyor.core.types import JSON, TaskId
from conveyor.errors import CycleError, InvalidSpecError


@dataclass(frozen=True, slots=True)
class PlannedTask:
    id: TaskId
    spec: TaskSpec
    depends_on: list[TaskId]  # ids: batch names already resolved
    args: list[JSON]
    kwargs: dict[str, JSON]
    has_refs: bool
    limits: list[str]  # the keys of the limits it takes, filled in from its arguments and labels


def plan_batch(specs: Sequence[TaskSpec], new_ids: Sequence[TaskId]) -> list[PlannedTask]:
    """Resolve names within the batch and reject what cannot work before anything is stored.

    A `depends_on` entry (or `$result` reference) that names another spec of the batch points at
    that spec; anything else is taken as the id of a stored task, which the engine checks.
    """
    if len(specs) != len(new_ids):
        raise ValueError("one id per spec")
    names: dict[str, TaskId] = {}
    keys: set[str] = set()
    for index, (spec, task_id) in enumerate(zip(specs, new_ids, strict=True)):
        label = spec.name or f"#{index}"
        if spec.name is not None:
            if spec.name in names:
                raise InvalidSpecError("name is used twice in this batch", field="name", task=label)
            names[spec.name] = task_id
        if spec.key is not None:
            if spec.key in keys:
                raise InvalidSpecError("key is used twice in this batch", field="key", task=label)
            keys.add(spec.key)

    planned: list[PlannedTask] = []
    edges: dict[str, list[str]] = {}
    for spec, task_id in zip(specs, new_ids, strict=True):
        refs = find_refs(spec.args) | find_refs(spec.kwargs)
        wanted = list(dict.fromkeys([*spec.depends_on, *sorted(refs)]))
        depends_on = [names.get(dep, dep) for dep in wanted]
        if task_id in depends_on:
            raise InvalidSpecError(
                "a task cannot depend on itself", field="depends_on", task=spec.display_name()
            )
        args = cast(list[JSON], rename_refs(spec.args, names)) if refs else spec.args
        kwargs = cast(dict[str, JSON], rename_refs(spec.kwargs, names)) if refs else spec.kwargs
        limits = _limit_keys(spec) if spec.limits else []
        planned.append(PlannedTask(task_id, spec, depends_on, args, kwargs, bool(refs), limits))
        edges[task_id] = depends_on
    try:
        check_acyclic(edges)
    except CycleError as exc:
        ids_to_names = {task_id: name for name, task_id in names.items()}
        raise CycleError([ids_to_names.get(node, node) for node in exc.cycle]) from None
    return planned


def _limit_keys(spec: TaskSpec) -> list[str]:
    try:
        return expand_limits(spec.limits, spec.args, spec.kwargs, spec.labels)
    except LimitKeyError as exc:
        raise InvalidSpecError(
            str(exc), field=f"limits.{exc.index}", task=spec.display_name()
        ) from None
