"""Embedded mode: the engine, a SQLite store and the worker program in one process."""

from conveyor.embedded.job import Job
from conveyor.embedded.run import Progress
from conveyor.embedded.scheduler import RunSummary, Scheduler

__all__ = ["Job", "Progress", "RunSummary", "Scheduler"]
