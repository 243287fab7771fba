"""Fixtures for the store contract suite: one Engine per test, over every Store implementation.

Every test in `tests/contract/` takes the `h` (harness) fixture, built on the `store` fixture,
which is parametrized by backend (`STORE_BACKENDS`), so each rule is proved once per store. A new
store joins by adding one entry to `STORE_BACKENDS` and one `_open_<backend>` function; no test
changes. Stores must tolerate `close()` twice: tests close one to simulate a restart, and the
fixture closes every store it opened.

Time is a `ManualClock` and the engine's randomness a seeded `random.Random`, so every run of the
suite makes the same decisions.
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor.clock import ManualClock
from conveyor.core.models import Assignment, Task, Worker
from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Changes, Engine, EngineSettings, Report
from conveyor.store.base import Store

SEED = 20260101

SETTINGS = EngineSettings(
    lease_s=10.0,
    heartbeat_interval_s=1.0,
    worker_dead_after_s=5.0,
    delivery_limit=6,
)
"""Small timings so that tests move the clock a few seconds, not minutes."""


# ---- store backends -------------------------------------------------------------------------


@dataclass
class StoreFactory:
    """Opens stores on one backing database; `open()` twice gives two views of the same data."""

    backend: str
    open: Callable[[], Store]
    migration_versions: Callable[[], list[int]]
    """The schema versions recorded as applied, one entry per row (duplicates would show twice)."""
    opened: list[Store] = field(default_factory=list)
    cleanup: Callable[[], None] = lambda: None
    """Runs after every store is closed: drops what the backend created for this test."""

    def open_tracked(self) -> Store:
        store = self.open()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        self.cleanup()


def _open_sqlite(tmp_path: Path) -> StoreFactory:
    from conveyor.store.sqlite import SQLiteStore

    db = tmp_path / "conveyor.db"

    def versions() -> list[int]:
        conn = sqlite3.connect(db)
        try:
            return [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        finally:
            conn.close()

    return StoreFactory("sqlite", lambda: SQLiteStore(db), versions)


def _open_postgres(tmp_path: Path) -> StoreFactory:
    """A fresh schema per test on the database CONVEYOR_TEST_POSTGRES_URL names, dropped after."""
    url = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CONVEYOR_TEST_POSTGRES_URL is not set; PostgreSQL contract tests skipped")
    import psycopg

    from conveyor.store.postgres import PostgresStore

    schema = f"conveyor_test_{uuid.uuid4().hex[:12]}"

    def versions() -> list[int]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(f'SELECT version FROM "{schema}".schema_migrations').fetchall()
        return [row[0] for row in rows]

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return StoreFactory(
        "postgres",
        lambda: PostgresStore(url, schema=schema, max_connections=8),
        versions,
        cleanup=drop,
    )


STORE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
_OPENERS: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
}


@pytest.fixture(params=STORE_BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = _OPENERS[request.param](tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory.open_tracked()


# ---- the harness ----------------------------------------------------------------------------


class Recorder:
    """An events listener that keeps every Changes that made tasks ready or finished them."""

    def __init__(self) -> None:
        self.calls: list[Changes] = []

    def __call__(self, changes: Changes) -> None:
        if changes.ready or changes.ended:
            self.calls.append(Changes(ready=dict(changes.ready), ended=dict(changes.ended)))

    @property
    def ready_queues(self) -> set[str]:
        return {q for c in self.calls for q in c.ready_queues}

    @property
    def ready(self) -> dict[str, int]:
        """Tasks made ready by queue, over every call."""
        total: dict[str, int] = {}
        for call in self.calls:
            for queue, count in call.ready.items():
                total[queue] = total.get(queue, 0) + count
        return total

    @property
    def finished(self) -> set[str]:
        return {t for c in self.calls for t in c.finished}

    def clear(self) -> None:
        self.calls.clear()


@dataclass
class Harness:
    """An engine on a store, a manual clock, and short-hands for the steps tests repeat."""

    engine: Engine
    clock: ManualClock
    factory: StoreFactory

    # submitting

    def spec(self, handler: str = "noop", **fields: Any) -> TaskSpec:
        return TaskSpec(handler=handler, **fields)

    def submit(self, handler: str = "noop", **fields: Any) -> Task:
        return self.engine.submit(self.spec(handler, **fields))

    def submit_batch(self, *specs: dict[str, Any]) -> list[Task]:
        return self.engine.submit_batch([TaskSpec(**{"handler": "noop", **spec}) for spec in specs])

    # workers

    def worker(
        self,
        name: str = "w1",
        *,
        queues: Sequence[str] = ("default",),
        resources: dict[str, float] | None = None,
        concurrency: int = 4,
    ) -> Worker:
        return self.engine.register_worker(
            name=name,
            host="test-host",
            pid=1000,
            concurrency=concurrency,
            queues=queues,
            resources=resources,
        )

    def lease(self, worker: Worker, max_tasks: int = 10, **kwargs: Any) -> list[Assignment]:
        """A worker's first look, as the server makes it: the read that may answer "nothing"
        (StoreTx.may_lease) must never hide a task that a lease would take, so every test
        that leases through here proves it once more. Tests that call engine.lease() prove
        the lease without it."""
        return self.engine.lease(worker.id, max_tasks, **{"look_first": True, **kwargs})

    def lease_one(self, worker: Worker, **kwargs: Any) -> Assignment:
        assignments = self.lease(worker, 1, **kwargs)
        assert len(assignments) == 1, f"expected one assignment, got {assignments}"
        return assignments[0]

    def leased_ids(self, worker: Worker, max_tasks: int = 10, **kwargs: Any) -> list[str]:
        return [a.task_id for a in self.lease(worker, max_tasks, **kwargs)]

    def report(
        self, worker: Worker, assignment: Assignment, outcome: Outcome, **fields: Any
    ) -> TaskState:
        return self.engine.report_one(
            worker.id, Report(assignment.task_id, assignment.token, outcome, **fields)
        )

    def succeed(self, worker: Worker, assignment: Assignment, result: Any = None) -> TaskState:
        return self.report(worker, assignment, Outcome.SUCCEEDED, result=result)

    def fail(self, worker: Worker, assignment: Assignment, error: str = "boom") -> TaskState:
        return self.report(worker, assignment, Outcome.FAILED, error=error)

    def run_next(self, worker: Worker, result: Any = None) -> Assignment:
        """Lease the next task and report it succeeded."""
        assignment = self.lease_one(worker)
        self.succeed(worker, assignment, result)
        return assignment

    # reads

    def get(self, task_id: str) -> Task:
        return self.engine.get(task_id)

    def state(self, task_id: str) -> TaskState:
        return self.engine.get(task_id).state

    def states(self, *tasks: Task) -> list[TaskState]:
        found = self.engine.get_many([t.id for t in tasks])
        return [found[t.id].state for t in tasks]

    # events

    def record_events(self) -> Recorder:
        recorder = Recorder()
        self.engine.events.subscribe(recorder)
        return recorder

    # restarts

    def reopen(self) -> Harness:
        """A new engine on a new store over the same database, as after a server restart."""
        return make_harness(self.factory, self.clock)


def make_harness(
    factory: StoreFactory, clock: ManualClock | None = None, store: Store | None = None
) -> Harness:
    clock = clock or ManualClock()
    store = store or factory.open_tracked()
    engine = Engine(store, clock=clock, settings=SETTINGS, rng=random.Random(SEED))
    return Harness(engine, clock, factory)


@pytest.fixture
def h(store_factory: StoreFactory, store: Store) -> Harness:
    return make_harness(store_factory, store=store)
