"""PostgreSQL only: statements that return nothing wait for the next round trip (postgres_batch.py),
and that changes neither which call gets an error nor what is stored.

A lease was ten round trips (psycopg's BEGIN, the reads, the task UPDATE, the attempt INSERT,
COMMIT), a report six, a submit three; most of each call's time on a busy machine. The held writes
and BEGIN travel with the next statement, and the reads every lease makes go together; their errors must still belong to the call that made
them, inside a group commit too, and a transaction that failed must never be answered as stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.core.states import Outcome
from conveyor.engine import Engine
from conveyor.engine.reports import Report
from conveyor.errors import StoreBusyError, StoreError
from tests.helpers.postgres import in_one_group, postgres_engine, postgres_url

__all__ = ["postgres_engine", "postgres_url"]


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    return postgres_engine


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], int]:
    """Counts what a call sends to PostgreSQL: every statement string, executemany, and the
    BEGIN, COMMIT and SAVEPOINT that psycopg sends on its own."""
    import psycopg

    sent = [0]

    def counted(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sent[0] += 1
            return method(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(psycopg.Connection, "execute", counted(psycopg.Connection.execute))
    monkeypatch.setattr(psycopg.Cursor, "executemany", counted(psycopg.Cursor.executemany))
    monkeypatch.setattr(
        psycopg.Connection, "_exec_command", counted(psycopg.Connection._exec_command)
    )

    def count(call: Callable[[], Any]) -> int:
        before = sent[0]
        call()
        return sent[0] - before

    return count


@pytest.mark.postgres
def test_submit_lease_and_report_take_their_reads_plus_one_round_trip(
    engine: Engine, round_trips: Callable[[Callable[[], Any]], int]
) -> None:
    worker = engine.register_worker(name="w", host="h", pid=1, concurrency=1)
    _warm_up(engine, worker.id)
    assert round_trips(lambda: engine.submit(TaskSpec(handler="echo"))) == 2
    leased: list[Any] = []
    # BEGIN with the reads every lease makes (the worker's row, the due tasks, the pauses, the
    # limit wakes: StoreTx.read_ahead), the candidates, then the task UPDATE, the attempt
    # INSERT and the COMMIT in one.
    assert round_trips(lambda: leased.extend(engine.lease(worker.id, 1))) == 3
    [assignment] = leased
    report = Report(assignment.task_id, assignment.token, Outcome.SUCCEEDED, result=1)
    # BEGIN with the task's read and its dependents (StoreTx.read_ahead), then both UPDATEs
    # and the COMMIT in one.
    assert round_trips(lambda: engine.report(worker.id, [report])) == 2
    assert engine.get(assignment.task_id).state.value == "succeeded"


def _warm_up(engine: Engine, worker_id: str) -> None:
    """Run every path the counts measure until its statements are prepared (postgres_batch.py
    prepares a statement before the transaction after the one that sent it the second time:
    those PREPAREs are round trips too, once per connection)."""
    for _ in range(3):
        engine.lease(worker_id, 1, look_first=True)
        engine.lease(worker_id, 1)
        engine.submit(TaskSpec(handler="echo"))
        for assignment in engine.lease(worker_id, 1, look_first=True):
            report = Report(assignment.task_id, assignment.token, Outcome.SUCCEEDED, result=1)
            engine.report(worker_id, [report])


def _stored_names(engine: Engine) -> set[str]:
    return {task.name for task in engine.list_tasks(limit=100) if task.name}


@pytest.mark.postgres
def test_a_held_write_that_fails_fails_its_own_call_of_a_group_only(engine: Engine) -> None:
    def submit_then_hold_a_failing_write(name: str) -> Any:
        with engine.store.transaction() as tx:
            task = engine.submit(TaskSpec(handler="echo", name=name))
            tx.conn.defer("UPDATE tasks SET priority = 1 / 0 WHERE id = %s", (task.id,))  # type: ignore[attr-defined]
            return task

    before, failing, after = in_one_group(engine, submit_then_hold_a_failing_write, "failing")
    assert isinstance(failing, StoreError) and "division by zero" in str(failing), failing
    assert before.name == "before" and after.name == "after", (before, after)
    assert _stored_names(engine) == {"before", "after"}


@pytest.mark.postgres
def test_writes_held_by_a_call_that_raises_are_never_sent(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"), engine.store.transaction() as tx:
        engine.submit(TaskSpec(handler="echo", name="kept"))
        with pytest.raises(RuntimeError), engine.store.transaction() as inner:
            inner.conn.defer("UPDATE tasks SET name = 'overwritten'")  # type: ignore[attr-defined]
            raise RuntimeError("undo the savepoint")
        tx.conn.flush()  # type: ignore[attr-defined]
        assert _names_seen_by(tx) == {"kept"}, "the savepoint's held write was dropped, not sent"
        raise RuntimeError("changed my mind")
    assert _stored_names(engine) == set()


def _names_seen_by(tx: Any) -> set[str]:
    return {row[0] for row in tx.conn.execute("SELECT name FROM tasks").fetchall()}


@pytest.mark.postgres
def test_a_transaction_whose_error_was_caught_is_not_answered_as_committed(
    engine: Engine,
) -> None:
    import psycopg

    with pytest.raises(StoreBusyError, match="did not commit"), engine.store.transaction() as tx:
        engine.submit(TaskSpec(handler="echo", name="lost"))
        # Code above the store catches a statement's error and carries on: PostgreSQL has
        # aborted the transaction, and its COMMIT answers ROLLBACK.
        with pytest.raises(psycopg.errors.DivisionByZero):
            tx.conn.execute("SELECT 1 / 0")
    assert _stored_names(engine) == set()
    engine.submit(TaskSpec(handler="echo", name="later"))  # the connection is usable again
    assert _stored_names(engine) == {"later"}


@pytest.mark.postgres
def test_a_first_look_that_finds_nothing_takes_two_round_trips(
    engine: Engine, round_trips: Callable[[Callable[[], Any]], int]
) -> None:
    worker = engine.register_worker(name="w", host="h", pid=1, concurrency=1)
    _warm_up(engine, worker.id)
    # Without the look, a lease that finds nothing takes the three of one that finds a task.
    assert round_trips(lambda: engine.lease(worker.id, 1)) == 3
    # The worker's read and StoreTx.may_lease, with no transaction around them.
    assert round_trips(lambda: engine.lease(worker.id, 1, look_first=True)) == 2
    engine.submit(TaskSpec(handler="echo"))
    leased: list[Any] = []
    assert round_trips(lambda: leased.extend(engine.lease(worker.id, 1, look_first=True))) == 5
    assert len(leased) == 1
