"""Result references: a task's args may carry an upstream task's result.

Anywhere inside `args` or `kwargs`, the JSON object `{"$result": "fetch"}` stands for the result of
task `fetch` (a name in the same batch or job file, or a task id); `{"$result": "fetch", "$path":
"body.links.0"}` picks a part of it. A reference adds an implicit dependency. It is replaced by the
value when the task is leased, so the handler sees plain JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from conveyor.core.types import JSON

REF_KEY = "$result"
PATH_KEY = "$path"
# ASCII digits only: str.isdigit() also admits "²", which int() refuses.
_INDEX = re.compile(r"-?[0-9]+")


def _is_ref(value: JSON) -> bool:
    return (
        isinstance(value, dict)
        and REF_KEY in value
        and isinstance(value[REF_KEY], str)
        and set(value) <= {REF_KEY, PATH_KEY}
    )


def find_refs(value: JSON) -> set[str]:
    """Every task name or id referenced inside `value`."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if _is_ref(item):
                found.add(str(item[REF_KEY]))
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _map(value: JSON, on_ref: Callable[[dict[str, JSON]], JSON]) -> JSON:
    if isinstance(value, dict):
        if _is_ref(value):
            return on_ref(value)
        return {k: _map(v, on_ref) for k, v in value.items()}
    if isinstance(value, list):
        return [_map(v, on_ref) for v in value]
    return value


def rename_refs(value: JSON, names_to_ids: Mapping[str, str]) -> JSON:
    """Rewrite references by batch name into references by task id."""

    def rename(ref: dict[str, JSON]) -> JSON:
        target = str(ref[REF_KEY])
        return {**ref, REF_KEY: names_to_ids.get(target, target)}

    return _map(value, rename)


def pick_path(value: JSON, path: str) -> JSON:
    """Follow a dotted path (`a.b.0`) into a JSON value; KeyError names the missing step."""
    current = value
    for step in path.split(".") if path else []:
        if isinstance(current, dict) and step in current:
            current = current[step]
        elif (
            isinstance(current, list)
            and _INDEX.fullmatch(step)
            and -len(current) <= int(step) < len(current)
        ):
            current = current[int(step)]
        else:
            raise KeyError(f"path {path!r}: no {step!r} in the referenced result")
    return current


def resolve_refs(value: JSON, results: Mapping[str, JSON]) -> JSON:
    """Replace every reference (by task id) with that task's result, or the part `$path` names."""

    def resolve(ref: dict[str, JSON]) -> JSON:
        result = results[str(ref[REF_KEY])]
        path = ref.get(PATH_KEY)
        return pick_path(result, path) if isinstance(path, str) else result

    return _map(value, resolve)
