"""Conveyor's benchmarks: Conveyor (SQLite, PostgreSQL) measured like for like with Huey,
Celery, procrastinate and pgqueuer in one invocation. `python -m benchmarks --help`."""
