"""Run handlers in long-lived child processes, with hard timeouts, cancellation and crash isolation."""

from conveyor.executor.models import Execution, ExecutionResult
from conveyor.executor.pool import ProcessPool

__all__ = ["Execution", "ExecutionResult", "ProcessPool"]
