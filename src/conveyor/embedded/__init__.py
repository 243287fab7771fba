"""Embedded mode: the engine, a SQLite store and a process pool in one process."""

from conveyor.embedded.job import Job
from conveyor.embedded.scheduler import Progress, RunSummary, Scheduler

__all__ = ["Job", "Progress", "RunSummary", "Scheduler"]
