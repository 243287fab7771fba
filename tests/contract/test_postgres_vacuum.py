"""PostgreSQL only: the maintenance pass vacuums the task tables once leases and reports have left
enough dead rows, in the background, one vacuum at a time."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome
from conveyor.engine import Engine, Report
from conveyor.store.postgres_vacuum import TaskVacuum


@pytest.fixture
def postgres_url() -> Iterator[tuple[str, str]]:
    url = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CONVEYOR_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    import psycopg

    schema = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    yield url, schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
def test_dead_rows_past_the_threshold_start_a_vacuum_of_the_task_tables(
    postgres_url: tuple[str, str],
) -> None:
    import psycopg

    from conveyor.store.postgres import PostgresStore

    url, schema = postgres_url
    PostgresStore(url, schema=schema).close()  # the tables, before the stores below
    never = PostgresStore(url, schema=schema, max_connections=2, vacuum_after_dead_rows=10**9)
    store = PostgresStore(url, schema=schema, max_connections=4, vacuum_after_dead_rows=0)
    try:
        engine = Engine(store)
        worker = engine.register_worker(name="w", host="h", pid=1, concurrency=8)
        engine.submit_batch([TaskSpec(handler="noop") for _ in range(40)])
        while leased := engine.lease(worker.id, 8):
            engine.report(
                worker.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED) for a in leased]
            )
        never.maintain()
        never.vacuum.wait()
        assert never.vacuum.runs == 0  # far below its threshold: left to autovacuum

        store.vacuum.wait(30)  # Engine() ran a maintenance pass of its own
        before = store.vacuum.runs
        store.maintain()
        store.vacuum.wait(30)
        assert store.vacuum.runs == before + 1
        with psycopg.connect(url) as conn:
            (vacuumed,) = conn.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = %s "
                "AND relname IN ('tasks', 'attempts') AND last_vacuum IS NOT NULL",
                (schema,),
            ).fetchone()  # type: ignore[misc]
        assert vacuumed == 2
        assert engine.counts()  # the store works on after it
    finally:
        never.close()
        store.close()


def test_one_vacuum_at_a_time_and_a_failure_is_only_logged(caplog) -> None:
    import psycopg

    started = threading.Event()
    release = threading.Event()
    fail = threading.Event()

    class FakeConnection:
        autocommit = False

        def execute(self, query: str) -> None:
            assert self.autocommit, "VACUUM must run outside a transaction"
            started.set()
            assert release.wait(10)
            if fail.is_set():
                raise psycopg.OperationalError("the database went away")

    @contextmanager
    def connect() -> Iterator[Any]:
        yield FakeConnection()

    vacuum = TaskVacuum(connect, dead_rows=100)
    assert not vacuum.consider(99)
    assert vacuum.consider(100)
    assert started.wait(10)
    assert not vacuum.consider(10_000)  # one is running
    release.set()
    vacuum.wait(10)
    assert vacuum.runs == 1

    fail.set()
    assert vacuum.consider(100)
    vacuum.wait(10)
    assert vacuum.runs == 1
    assert "vacuuming the task tables failed" in caplog.text


def test_stop_cancels_a_running_vacuum_and_no_new_one_starts(caplog) -> None:
    import psycopg

    started = threading.Event()
    cancelled = threading.Event()

    class SlowConnection:
        autocommit = False

        def execute(self, query: str) -> None:
            started.set()
            assert cancelled.wait(10), "stop() did not cancel the vacuum"
            raise psycopg.errors.QueryCanceled("canceling statement due to user request")

        def cancel_safe(self, timeout: float) -> None:
            cancelled.set()

    @contextmanager
    def connect() -> Iterator[Any]:
        yield SlowConnection()

    vacuum = TaskVacuum(connect, dead_rows=1)
    assert vacuum.consider(5)
    assert started.wait(10)
    vacuum.stop(timeout_s=10)
    assert cancelled.is_set()
    assert vacuum.runs == 0
    assert "failed" not in caplog.text  # a cancel on closing is not a failure
    assert not vacuum.consider(5)  # stopped: no new vacuum
