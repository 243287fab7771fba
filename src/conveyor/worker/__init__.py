"""The worker program: registers with a server, leases tasks, runs them in child processes with
hard timeouts, and reports the results. Started by `conveyor worker`."""

from conveyor.worker.config import WorkerConfig
from conveyor.worker.worker import Worker

__all__ = ["Worker", "WorkerConfig"]
