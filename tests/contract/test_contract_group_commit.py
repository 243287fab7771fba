"""Group commit on every store: calls share one transaction, each in a savepoint of it; a call
that raises undoes only its own work; events are told only after the shared commit; a failed
commit fails every call of the group and stores none of them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.engine import Changes
from conveyor.engine.group_commit import GroupCommit
from conveyor.errors import InvalidSpecError, NotFoundError, StoreError


def _run_together(commits: GroupCommit, *calls: tuple[Any, ...]) -> list[Any]:
    """Queue every call, then start the committer: they form one group."""

    async def main() -> list[Any]:
        running = asyncio.gather(
            *(commits.run(fn, *args) for fn, *args in calls), return_exceptions=True
        )
        await asyncio.sleep(0.01)  # every call is queued by now
        commits.start()
        return await running

    return asyncio.run(main())


def test_a_nested_transaction_is_a_savepoint_undone_alone(h) -> None:
    kept = h.spec(name="kept")
    with h.engine.store.transaction():
        (first,) = h.engine.submit_batch([kept])
        with pytest.raises(InvalidSpecError):
            h.engine.submit_batch([h.spec(name="doomed", depends_on=["no-such-task"])])
        with pytest.raises(RuntimeError), h.engine.store.transaction() as tx:
            tx.insert_tasks([])
            raise RuntimeError("undo me")
    assert h.engine.get(first.id).state is TaskState.QUEUED
    assert [t.name for t in h.engine.list_tasks()] == ["kept"]


def test_calls_share_a_commit_and_fail_alone(h) -> None:
    told: list[Changes] = []
    h.engine.events.subscribe(told.append)
    commits = GroupCommit(h.engine.store, h.engine.events, autostart=False)
    try:
        results = _run_together(
            commits,
            (h.engine.submit, TaskSpec(handler="noop", name="a")),
            (h.engine.get, "no-such-task"),
            (h.engine.submit, TaskSpec(handler="noop", name="b")),
            (h.engine.submit_batch, [TaskSpec(handler="noop", depends_on=["missing"])]),
        )
    finally:
        commits.stop()
    a, missing, b, refused = results
    assert isinstance(missing, NotFoundError)
    assert isinstance(refused, InvalidSpecError)
    assert {h.engine.get(a.id).name, h.engine.get(b.id).name} == {"a", "b"}
    assert sorted(t.name or "" for t in h.engine.list_tasks()) == ["a", "b"]
    # One notice for the group, after its commit, naming both submitted tasks.
    assert len(told) == 1
    assert sorted(t.id for t in told[0].submitted) == sorted([a.id, b.id])


def test_a_failed_commit_fails_every_call_and_stores_none(h, monkeypatch) -> None:
    told: list[Changes] = []
    h.engine.events.subscribe(told.append)
    commits = GroupCommit(h.engine.store, h.engine.events, autostart=False)
    real = h.engine.store.transaction
    opened: list[bool] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        """The group's own transaction fails to commit; the calls' savepoints work."""
        opened.append(True)
        outer = real(*args, **kwargs)
        if len(opened) > 1:
            return outer

        class Failing:
            def __enter__(self) -> Any:
                return outer.__enter__()

            def __exit__(self, *exc: Any) -> bool:
                outer.__exit__(RuntimeError, RuntimeError("disk full"), None)
                raise StoreError("disk full")

        return Failing()

    try:
        monkeypatch.setattr(h.engine.store, "transaction", failing)
        results = _run_together(
            commits,
            (h.engine.submit, TaskSpec(handler="noop", name="a")),
            (h.engine.submit, TaskSpec(handler="noop", name="b")),
        )
    finally:
        commits.stop()
        monkeypatch.undo()
    assert all(isinstance(r, StoreError) for r in results), results
    assert h.engine.list_tasks() == []
    assert told == []


def test_a_worker_not_heard_from_within_seen_within_s_is_leased_nothing(h) -> None:
    """What a woken long-poll asks: a worker silent for longer than that may be paused or gone."""
    task = h.submit()
    w = h.worker("w")
    h.clock.advance(5)
    assert h.lease(w, 1, seen_within_s=4.0) == []
    h.engine.heartbeat(w.id)
    (leased,) = h.lease(w, 1, seen_within_s=4.0)
    assert leased.task_id == task.id


def test_inline_when_idle_runs_a_lone_call_in_place_and_queues_behind_a_busy_committer(h) -> None:
    """With inline_when_idle a call made while nothing is queued or being committed runs on the
    caller's thread, with no hand-over; one made while the committer is busy joins its next group.
    """
    threads: dict[str, int] = {}

    def submit(label: str) -> Any:
        threads[label] = threading.get_ident()
        return h.engine.submit(TaskSpec(handler="noop", name=label))

    commits = GroupCommit(h.engine.store, h.engine.events, autostart=False, inline_when_idle=True)

    async def main() -> list[Any]:
        alone = await commits.run(submit, "alone")
        commits._committing = True  # as while the committer runs a group
        behind = asyncio.ensure_future(commits.run(submit, "behind"))
        await asyncio.sleep(0.01)
        assert "behind" not in threads, "it waits for the committer"
        commits._committing = False
        commits.start()
        return [alone, await behind]

    try:
        alone, behind = asyncio.run(main())
    finally:
        commits.stop()
    assert threads["alone"] == threading.get_ident()
    assert threads["behind"] != threading.get_ident()
    assert (alone.name, behind.name) == ("alone", "behind")
    assert {t.name for t in h.engine.list_tasks()} == {"alone", "behind"}


def test_a_group_of_one_commits_alone_and_fails_alone(h) -> None:
    """A lone call runs in its own transaction (no savepoint): answered once committed, and its
    error, with nothing stored, when it fails."""
    commits = GroupCommit(h.engine.store, h.engine.events)

    async def main() -> tuple[Any, BaseException | None]:
        stored = await commits.run(h.engine.submit, TaskSpec(handler="noop", name="lone"))
        try:
            await commits.run(
                h.engine.submit_batch, [TaskSpec(handler="noop", depends_on=["missing"])]
            )
        except InvalidSpecError as exc:
            return stored, exc
        return stored, None

    try:
        stored, error = asyncio.run(main())
    finally:
        commits.stop()
    assert h.engine.get(stored.id).state is TaskState.QUEUED
    assert isinstance(error, InvalidSpecError) and error.field == "depends_on"
    assert [t.name for t in h.engine.list_tasks()] == ["lone"]


def test_several_committers_run_groups_at_once_and_all_stop(h) -> None:
    """With committers=2, a call stuck in its transaction does not hold up the next one; stop()
    runs what is queued and ends every committer."""

    def committer_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("conveyor-committer")}

    others = committer_threads()
    commits = GroupCommit(h.engine.store, h.engine.events, committers=2)
    entered = threading.Event()
    release = threading.Event()

    def slow_read() -> str:
        entered.set()
        assert release.wait(10), "the second call never finished while the first held on"
        return "slow"

    async def main() -> tuple[Any, Any]:
        slow = asyncio.ensure_future(commits.run(slow_read))
        assert await asyncio.to_thread(entered.wait, 10)
        fast = await commits.run(h.engine.submit, TaskSpec(handler="noop", name="fast"))
        release.set()
        return await slow, fast

    try:
        slow, fast = asyncio.run(main())
    finally:
        release.set()
        commits.stop()
    assert slow == "slow"
    assert h.engine.get(fast.id).name == "fast"
    assert committer_threads() <= others


def test_committers_must_be_positive(h) -> None:
    with pytest.raises(ValueError, match="committers"):
        GroupCommit(h.engine.store, h.engine.events, committers=0)


def test_a_transaction_the_database_rolled_back_fails_every_call_of_the_group(tmp_path) -> None:
    """On a full disk or an I/O error SQLite may roll back the whole transaction, savepoints and
    all, as it fails a statement. The calls after that in the group must not run outside any
    transaction (each statement would commit alone: stored, yet answered as failed), and none of
    the group may be answered as stored."""
    import sqlite3

    from conveyor.engine import Engine
    from conveyor.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "rolled-back.db")
    engine = Engine(store)
    engine.submit(TaskSpec(handler="noop", name="earlier"))

    def fill_the_disk() -> None:
        with store.transaction() as tx:
            tx.insert_tasks([])
            store._writer.execute("ROLLBACK")  # what SQLite does by itself on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")

    commits = GroupCommit(store, engine.events, autostart=False)
    try:
        results = _run_together(
            commits,
            (engine.submit, TaskSpec(handler="noop", name="before")),
            (fill_the_disk,),
            (engine.submit, TaskSpec(handler="noop", name="after")),
        )
    finally:
        commits.stop()
    answered = [r.name if hasattr(r, "name") else repr(r) for r in results]
    assert all(isinstance(r, StoreError) for r in results), answered
    assert [t.name for t in engine.list_tasks()] == ["earlier"]
    store.close()
