"""Conveyor's benchmarks: the workloads of issue 8, run against Conveyor (SQLite, PostgreSQL) and,
where it is installed, Celery on Redis, in one invocation. `python -m benchmarks --help`."""
