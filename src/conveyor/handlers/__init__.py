"""Task handlers: the built-ins, and the policy that decides which handler names a worker runs."""

from conveyor.handlers.registry import (
    BUILTIN_HANDLERS,
    HandlerPolicy,
    check_handler,
    resolve_handler,
)

__all__ = ["BUILTIN_HANDLERS", "HandlerPolicy", "check_handler", "resolve_handler"]
