"""PostgreSQL only: a connection lost inside a transaction fails the transaction, loudly.

psycopg leaves a transaction block on a broken connection neither committing nor raising. The
group commit catches each call's error in its savepoint, so when the connection broke half-way
through a group, the calls before the break were answered as committed and nothing was. Here the
backend is terminated in the middle of a group, and at the end of a lone transaction: every call
answered as a success must be in the database, and the others must have failed with an error
that says to retry.
"""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.errors import StoreBusyError
from tests.helpers.postgres import (
    in_one_group,
    postgres_engine,
    postgres_url,
    terminate_connections,
)

__all__ = ["postgres_engine", "postgres_url"]


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    return postgres_engine


def _stored_names(postgres_url: str) -> set[str]:
    """The task names in the database, seen through a connection of its own."""
    import psycopg

    from conveyor.store import split_schema

    url, schema = split_schema(postgres_url)
    with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
        return {row[0] for row in conn.execute("SELECT name FROM tasks")}


def _kill_every_backend(postgres_url: str) -> None:
    from conveyor.store import split_schema

    url, _ = split_schema(postgres_url)
    assert terminate_connections(url, "") >= 1


@pytest.mark.postgres
def test_a_connection_lost_in_a_group_fails_every_call_of_it(
    engine: Engine, postgres_url: str
) -> None:
    def submit_then_lose_the_connection(name: str) -> Any:
        task = engine.submit(TaskSpec(handler="noop", name=name))
        _kill_every_backend(postgres_url)
        return task

    results = in_one_group(engine, submit_then_lose_the_connection, "breaking")
    stored = _stored_names(postgres_url)
    answered = {r.name for r in results if not isinstance(r, BaseException)}
    assert answered <= stored, f"answered as committed but not stored: {answered - stored}"
    assert all(isinstance(r, StoreBusyError) for r in results), results
    assert stored == set()


@pytest.mark.postgres
def test_a_connection_lost_before_the_commit_fails_a_lone_transaction(
    engine: Engine, postgres_url: str
) -> None:
    import psycopg

    with pytest.raises(StoreBusyError), engine.store.transaction() as tx:
        tx.insert_tasks([])
        _kill_every_backend(postgres_url)
        # A statement after the loss fails; its error is caught, as code above a store may do.
        with pytest.raises(psycopg.OperationalError):
            tx.conn.execute("SELECT 1")
    assert _stored_names(postgres_url) == set()
    # The store recovers: the pool replaces the broken connection.
    engine.submit(TaskSpec(handler="noop", name="later"))
    assert _stored_names(postgres_url) == {"later"}
