"""Naming a handler: the string a task spec carries for a function or a registered name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
