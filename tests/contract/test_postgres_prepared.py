"""PostgreSQL only: the statements a connection sends more than once are prepared on it and go as
`EXECUTE name(values)` (postgres_batch.py), and that changes neither what they do nor which
transaction fails.

Three ways it could go wrong, each tried here: a PREPARE that PostgreSQL refuses must not abort
the transaction that follows; a ROLLBACK must not take the prepared statements away (psycopg's
own prepared statements are dropped with `DEALLOCATE ALL` when it sees one); and the values must
reach each parameter, named or by position.
"""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.store.postgres_batch import _numbered
from tests.helpers.postgres import in_one_group, postgres_engine, postgres_url

__all__ = ["postgres_engine", "postgres_url"]


def _prepared_on(conn: Any) -> dict[str, str]:
    """The statements prepared in this connection's session: name -> statement."""
    rows = conn.raw.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
    return {name: statement for name, statement in rows}


def test_placeholders_become_numbered_parameters_the_same_name_the_same_number() -> None:
    assert _numbered("SELECT %s, %s") == ("SELECT $1, $2", None)
    assert _numbered("a <= %(now)s AND b IN (%(keys)s) AND c <= %(now)s") == (
        "a <= $1 AND b IN ($2) AND c <= $1",
        ("now", "keys"),
    )


@pytest.mark.postgres
def test_a_statement_sent_twice_is_prepared_once_and_answers_the_same(
    postgres_engine: Engine,
) -> None:
    query = "SELECT %(word)s::text || %(n)s::int, %(n)s::int * 2"
    answers = []
    for n in range(4):
        with postgres_engine.store.transaction() as tx:
            answers.append(tx.conn.execute(query, {"word": "n=", "n": n}).fetchone())  # type: ignore[attr-defined]
            prepared = _prepared_on(tx.conn)
    assert answers == [("n=0", 0), ("n=1", 2), ("n=2", 4), ("n=3", 6)]
    statements = [s for s in prepared.values() if "|| $2::int, $2::int * 2" in s]
    assert len(statements) == 1, prepared


@pytest.mark.postgres
@pytest.mark.parametrize("no_values", [(), []])
def test_a_statement_with_no_values_is_prepared_too(
    postgres_engine: Engine, no_values: Any
) -> None:
    for _ in range(4):
        with postgres_engine.store.transaction() as tx:
            assert tx.conn.execute("SELECT 6 * 7", no_values).fetchone() == (42,)  # type: ignore[attr-defined]
            prepared = _prepared_on(tx.conn)
    assert any("AS SELECT 6 * 7" in statement for statement in prepared.values()), prepared


@pytest.mark.postgres
def test_a_statement_postgresql_cannot_prepare_is_sent_as_it_is_and_aborts_nothing(
    postgres_engine: Engine,
) -> None:
    # A parameter whose type nothing tells: PREPARE refuses it ("could not determine data
    # type of parameter $1"); bound in place, the value's literal is read as text.
    query = "SELECT %s IS NULL"
    for _ in range(4):
        with postgres_engine.store.transaction() as tx:
            assert tx.conn.execute(query, ("x",)).fetchone() == (False,)  # type: ignore[attr-defined]
            postgres_engine.submit(TaskSpec(handler="echo", name="after"))
            prepared = _prepared_on(tx.conn)
    assert not any("IS NULL" in statement for statement in prepared.values())
    assert len(postgres_engine.list_tasks(limit=10)) == 4


@pytest.mark.postgres
def test_a_rolled_back_call_leaves_the_prepared_statements_in_place(
    postgres_engine: Engine,
) -> None:
    for name in ("one", "two", "three"):
        postgres_engine.submit(TaskSpec(handler="echo", name=name))
    with postgres_engine.store.transaction() as tx:
        before = _prepared_on(tx.conn)
    assert any("AS INSERT INTO tasks" in s for s in before.values()), before

    def fails(name: str) -> Any:
        with postgres_engine.store.transaction():  # a savepoint of the group's transaction
            postgres_engine.submit(TaskSpec(handler="echo", name=name))
            raise RuntimeError("undone by ROLLBACK TO SAVEPOINT")

    _, failed, _ = in_one_group(postgres_engine, fails, "failing")
    assert isinstance(failed, RuntimeError), failed
    postgres_engine.submit(TaskSpec(handler="echo", name="later"))
    with postgres_engine.store.transaction() as tx:
        after = _prepared_on(tx.conn)
    assert before.items() <= after.items()
    names = {task.name for task in postgres_engine.list_tasks(limit=100)}
    assert names == {"one", "two", "three", "before", "after", "later"}
