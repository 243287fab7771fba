"""Bounds on the JSON that tasks carry: deep or huge values are refused at the door, with the
field named, instead of exhausting a server, a worker or the database later."""

from __future__ import annotations

import json

from conveyor.core.types import JSON

MAX_DEPTH = 32
MAX_ARGS_BYTES = 256 * 1024
"""args and kwargs together, as compact JSON. Bigger inputs belong in files or object storage."""
MAX_RESULT_BYTES = 1024 * 1024

# One encoder for every check: json.dumps with options builds a new one per call, which cost
# more than encoding a task's few arguments (every submitted spec and report is checked).
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def check_json(value: JSON, *, max_bytes: int, what: str) -> JSON:
    """Return `value` unchanged, or raise ValueError if it nests deeper than MAX_DEPTH or
    serialises to more than `max_bytes`."""
    if not value and isinstance(value, list | dict) and max_bytes >= 2:  # `[]` or `{}`
        return value
    depth = _depth(value)
    if depth > MAX_DEPTH:
        raise ValueError(f"{what} nests {depth} levels deep; at most {MAX_DEPTH} are allowed")
    size = len(_compact(value).encode())
    if size > max_bytes:
        raise ValueError(f"{what} is {size:,} bytes as JSON; at most {max_bytes:,} are allowed")
    return value


def _depth(value: JSON) -> int:
    """Nesting depth, without recursion (a hostile value must not blow the stack)."""
    deepest = 0
    stack: list[tuple[JSON, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in item)
    return deepest
