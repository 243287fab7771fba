"""PostgreSQL only: a read is its statements alone, with no BEGIN and COMMIT around them, and the
connection it used goes back to the pool ready for transactions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conveyor.core.models import Task
from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.errors import StoreBusyError
from tests.helpers.postgres import postgres_url

__all__ = ["postgres_url"]


@dataclass
class OneConnection:
    """A store whose pool holds one connection (each transaction gets the very connection the
    one before it used), an engine on it, and one task stored."""

    url: str
    store: Any  # PostgresStore, imported only when PostgreSQL tests run
    engine: Engine
    task: Task


@pytest.fixture
def one_connection(postgres_url: str) -> Iterator[OneConnection]:
    from conveyor.store import split_schema
    from conveyor.store.postgres import PostgresStore

    url, schema = split_schema(postgres_url)
    store = PostgresStore(url, schema=schema, min_connections=1, max_connections=1)
    try:
        engine = Engine(store)
        [task] = engine.submit_batch([TaskSpec(handler="noop")])
        yield OneConnection(url, store, engine, task)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_read_opens_no_transaction_and_a_write_after_it_still_rolls_back(
    one_connection: OneConnection,
) -> None:
    import psycopg

    store, task = one_connection.store, one_connection.task
    with store.transaction(write=False) as tx:
        assert tx.get_tasks([task.id])[task.id].id == task.id
        # Autocommit: the SELECT did not open a transaction for a COMMIT to close.
        assert tx.conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE

    with pytest.raises(RuntimeError, match="abandon"), store.transaction() as tx:
        assert tx.conn.in_transaction  # BEGIN is held, to go with the first statement
        tx.delete_tasks([task.id])
        assert tx.conn.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS
        raise RuntimeError("abandon the write")

    assert one_connection.engine.get(task.id).id == task.id  # the delete was rolled back


@pytest.mark.postgres
def test_a_read_whose_connection_breaks_names_the_cause_and_the_next_read_works(
    one_connection: OneConnection,
) -> None:
    import psycopg

    store, task = one_connection.store, one_connection.task
    broken = pytest.raises(StoreBusyError, match="terminating connection")
    with broken, store.transaction(write=False) as tx:
        with psycopg.connect(one_connection.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (tx.conn.info.backend_pid,))
        tx.get_tasks([task.id])

    assert one_connection.engine.get(task.id).id == task.id  # on a new connection
