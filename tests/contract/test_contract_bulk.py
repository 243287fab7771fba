"""Bulk actions (conveyor.engine.bulk): retry, cancel or delete every task a filter selects, in
chunks of their own transactions, resumable after a crash, each task changed once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from conveyor.core.bulk import BulkAction, BulkState
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.engine import Report
from conveyor.engine.bulk import CLAIM_S
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError
from conveyor.store.base import TaskFilter

RETRY, CANCEL, DELETE = BulkAction.RETRY, BulkAction.CANCEL, BulkAction.DELETE


def _fail_all(h, tasks, *, error="boom"):
    """Lease every one of `tasks` (they must be the only ready ones) and report each failed."""
    w = h.worker("failer", queues=sorted({t.queue for t in tasks}), concurrency=10_000)
    left = {t.id for t in tasks}
    while left:
        leased = h.lease(w, 1000)
        assert leased, f"{len(left)} tasks not leased"
        h.engine.report(
            w.id, [Report(a.task_id, a.token, Outcome.FAILED, error=error) for a in leased]
        )
        left -= {a.task_id for a in leased}


def _many(h, count, **fields):
    return h.engine.submit_batch([h.spec(**fields) for _ in range(count)])


# ---- what a filter selects ------------------------------------------------------------------


@pytest.fixture
def zoo(h):
    """Tasks of every kind, by name; created at t0 (the first six) and t0+100 (the last two)."""
    t0 = h.clock.now()
    made = {}
    a_failed, child = h.submit_batch(
        {"name": "a-failed", "queue": "a", "handler": "h1", "labels": {"team": "x"}},
        {"name": "child", "queue": "a", "depends_on": ["a-failed"]},
    )
    made.update({"a-failed": a_failed, "child": child})
    made["a-timeout"] = h.submit(name="a-timeout", queue="a", handler="h2")
    made["b-failed"] = h.submit(name="b-failed", queue="b", handler="h1", labels={"team": "y"})
    made["b-succeeded"] = h.submit(name="b-succeeded", queue="b")
    w = h.worker(queues=["a", "b"])
    h.clock.advance(10)
    h.fail(w, h.lease_one(w, queues=["a"]), error="boom")  # a-failed, seq order
    h.clock.advance(10)
    h.report(w, h.lease_one(w, queues=["a"]), Outcome.TIMED_OUT, error="timed out")
    h.clock.advance(10)
    h.fail(w, h.lease_one(w, queues=["b"]), error="other")
    h.succeed(w, h.lease_one(w, queues=["b"]))
    h.clock.advance(70)
    made["c-queued"] = h.submit(name="c-queued", queue="c")
    made["c-cancelled"] = h.submit(name="c-cancelled", queue="c")
    h.engine.cancel(made["c-cancelled"].id)
    return t0, made


FILTERS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("state", {"states": (TaskState.FAILED,)}, {"a-failed", "child", "b-failed"}),
    ("states and queue", {"states": (TaskState.FAILED, TaskState.TIMED_OUT), "queue": "a"},
     {"a-failed", "child", "a-timeout"}),
    ("handler", {"handler": "h1"}, {"a-failed", "b-failed"}),
    ("name", {"name": "b-failed"}, {"b-failed"}),
    ("label", {"labels": (("team", "x"),)}, {"a-failed"}),
    ("reason", {"reason": Reason.DEPENDENCY_FAILED}, {"child"}),
    ("error", {"error": "boom"}, {"a-failed"}),
    ("no error", {"error": "", "queue": "c"}, {"c-queued", "c-cancelled"}),
    ("created after", {"created_after": 50}, {"c-queued", "c-cancelled"}),
    ("created before", {"created_before": 50, "queue": "b"}, {"b-failed", "b-succeeded"}),
    ("finished between", {"finished_after": 15, "finished_before": 30}, {"a-timeout"}),
]  # fmt: skip


@pytest.mark.parametrize(("criteria", "expected"), [(c, e) for _, c, e in FILTERS],
                         ids=[name for name, _, _ in FILTERS])  # fmt: skip
def test_a_filter_selects_the_tasks_it_names_and_no_others(h, zoo, criteria, expected):
    t0, made = zoo
    times = {"created_after", "created_before", "finished_after", "finished_before"}
    criteria = {
        key: t0 + timedelta(seconds=value) if key in times else value
        for key, value in criteria.items()
    }
    where = TaskFilter(**criteria)

    plan = h.engine.plan_bulk(DELETE, where)
    assert plan.record.total == len(expected)
    record, _ = h.engine.start_bulk(DELETE, where)
    done = h.engine.run_bulk(record.id)

    left = {
        name
        for name, task in made.items()
        if task.id in h.engine.get_many([t.id for t in made.values()])
    }
    assert set(made) - left == expected
    assert (done.matched, done.changed, done.skipped) == (len(expected), len(expected), 0)


def test_a_filter_by_ids_selects_those_tasks(h, zoo):
    _, made = zoo
    where = TaskFilter(ids=(made["b-failed"].id, made["c-queued"].id, "no-such-task"))
    plan = h.engine.plan_bulk(RETRY, where)
    assert (plan.record.total, plan.record.estimate) == (2, 1)
    record, _ = h.engine.start_bulk(RETRY, where)
    done = h.engine.run_bulk(record.id)
    assert (done.matched, done.changed, done.skipped) == (2, 1, 1)
    assert h.states(made["b-failed"], made["c-queued"]) == [TaskState.QUEUED, TaskState.QUEUED]


def test_a_bulk_action_needs_a_criterion_and_a_sane_chunk(h):
    with pytest.raises(InvalidSpecError) as caught:
        h.engine.plan_bulk(DELETE, TaskFilter())
    assert caught.value.field == "filter"
    with pytest.raises(InvalidSpecError) as caught:
        h.engine.start_bulk(RETRY, TaskFilter(queue="q"), chunk_size=0)
    assert caught.value.field == "chunk_size"


# ---- dry runs -------------------------------------------------------------------------------


def test_a_dry_run_changes_nothing_and_counts_what_would_change(h):
    failed = _many(h, 30, queue="q")
    _fail_all(h, failed)
    running = _many(h, 4, queue="q")
    w = h.worker("runner", queues=["q"])
    assert len(h.lease(w, 10)) == 4
    queued = _many(h, 5, queue="q")
    _many(h, 7, queue="elsewhere")
    before = {t.id: t for t in h.engine.list_tasks(limit=1000)}

    plan = h.engine.plan_bulk(RETRY, TaskFilter(queue="q"))

    assert plan.by_state == {TaskState.FAILED: 30, TaskState.RUNNING: 4, TaskState.QUEUED: 5}
    assert (plan.record.total, plan.record.estimate) == (39, 30)
    assert len(plan.sample) == 20
    assert {t.state for t in plan.sample} == {TaskState.FAILED}
    assert {t.id for t in plan.sample} <= {t.id for t in failed}
    cancel = h.engine.plan_bulk(CANCEL, TaskFilter(queue="q"))
    assert cancel.record.estimate == 9
    assert {t.id for t in cancel.sample} == {t.id for t in running + queued}
    assert h.engine.plan_bulk(DELETE, TaskFilter(queue="q")).record.estimate == 35
    assert h.engine.plan_bulk(RETRY, TaskFilter(queue="q", states=(TaskState.QUEUED,))).sample == []

    assert {t.id: t for t in h.engine.list_tasks(limit=1000)} == before
    assert h.engine.unclaimed_bulks() == []
    with pytest.raises(NotFoundError):
        h.engine.bulk(plan.record.id)


# ---- chunks -----------------------------------------------------------------------------------


@dataclass
class Counting:
    """A store that counts write transactions and the tasks each one writes."""

    inner: Any
    written: list[int] = field(default_factory=list)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self.inner.transaction(write=write) as tx:
            if not write:
                yield tx
                return
            self.written.append(0)
            yield _CountingTx(tx, self.written)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _CountingTx:
    def __init__(self, inner: Any, written: list[int]) -> None:
        self._inner, self._written = inner, written

    def update_tasks(self, tasks: Any) -> None:
        self._written[-1] += len(tasks)
        self._inner.update_tasks(tasks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_5000_task_action_commits_in_chunks_and_a_submit_gets_in_between(h):
    tasks = _many(h, 5000, queue="big")
    counting = Counting(h.engine.store)
    h.engine.store = counting
    record, created = h.engine.start_bulk(CANCEL, TaskFilter(queue="big"), chunk_size=500)
    assert created and record.total == 5000
    counting.written.clear()
    submitted: list[Any] = []

    def between(progress) -> None:
        if progress.chunks == 3:  # from another thread: it must not wait for the whole action
            thread = threading.Thread(target=lambda: submitted.append(h.submit(queue="big")))
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), "a submit waited for the bulk action"
            assert h.engine.bulk(record.id).state is BulkState.RUNNING

    done = h.engine.run_bulk(record.id, between=between)

    assert done.state is BulkState.DONE
    assert (done.matched, done.changed, done.skipped) == (5000, 5000, 0)
    # Ten chunks of 500 tasks, the submit's own transaction after the third, and a last chunk
    # that finds nothing more.
    assert counting.written == [500] * 3 + [0] + [500] * 7 + [0]
    assert done.chunks == 11
    assert all(
        t.state is TaskState.CANCELLED for t in h.engine.get_many([t.id for t in tasks]).values()
    )
    [late] = submitted
    assert h.state(late.id) is TaskState.QUEUED, "submitted after the action was asked: untouched"


class _Meddling:
    """A store on which `meddle` runs right after a chunk has found its tasks, before it locks them."""

    def __init__(self, inner: Any, meddle: Any) -> None:
        self.inner, self.meddle = inner, meddle

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self.inner.transaction(write=write) as tx:
            yield tx if write else _MeddlingTx(tx, self.meddle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _MeddlingTx:
    def __init__(self, inner: Any, meddle: Any) -> None:
        self._inner, self._meddle = inner, meddle

    def bulk_candidates(self, *args: Any) -> Any:
        found = self._inner.bulk_candidates(*args)
        self._meddle(found)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_task_that_stops_matching_before_its_chunk_locks_it_is_left_alone(h):
    tasks = _many(h, 5, queue="q")
    w = h.worker(queues=["q"])
    record, _ = h.engine.start_bulk(CANCEL, TaskFilter(queue="q", states=(TaskState.QUEUED,)))
    leased: list[Any] = []

    def lease_one_meanwhile(found: Any) -> None:
        if not leased:
            assert len(found) == 5
            # Without the first look: its read would nest in this thread's open read, which
            # SQLite refuses; another worker's lease would not be in this thread.
            leased.append(h.lease_one(w, look_first=False))

    store = h.engine.store
    h.engine.store = _Meddling(store, lease_one_meanwhile)
    done = h.engine.run_bulk(record.id)
    h.engine.store = store

    assert (done.matched, done.changed) == (4, 4)
    assert h.state(leased[0].task_id) is TaskState.RUNNING, "no longer queued: not cancelled"
    assert sorted(h.states(*tasks)).count(TaskState.CANCELLED) == 4


# ---- crashes and resuming ---------------------------------------------------------------------


def test_a_crash_after_some_chunks_resumes_where_it_stopped_and_changes_each_task_once(h):
    tasks = _many(h, 2000, queue="q")
    _fail_all(h, tasks)
    record, _ = h.engine.start_bulk(RETRY, TaskFilter(states=(TaskState.FAILED,)), chunk_size=300)
    recorder = h.record_events()

    stopped = h.engine.run_bulk(record.id, "server-1", max_chunks=3)  # then the server dies

    assert (stopped.state, stopped.matched, stopped.changed) == (BulkState.RUNNING, 900, 900)
    retried_first = [t for t in tasks if h.state(t.id) is TaskState.QUEUED]
    assert len(retried_first) == 900
    # Some of those fail again before the action resumes: they are behind its cursor.
    again = retried_first[:10]
    w = h.worker("again", queues=["q"], concurrency=10)
    leased = h.lease(w, 10)
    assert [a.task_id for a in leased] == [t.id for t in again]
    h.engine.report(
        w.id, [Report(a.task_id, a.token, Outcome.FAILED, error="again") for a in leased]
    )
    restarted = h.reopen()
    assert restarted.engine.unclaimed_bulks() == [], "the dead server's claim has not lapsed"
    restarted.clock.advance(CLAIM_S + 1)
    assert restarted.engine.unclaimed_bulks() == [record.id]

    other_runner = restarted.record_events()
    while True:
        resumed, more = restarted.engine.run_bulk_chunk(record.id, "server-2")
        if not more:
            break

    assert resumed.state is BulkState.DONE
    assert (resumed.matched, resumed.changed, resumed.skipped) == (2000, 2000, 0)
    assert sum(recorder.ready.values()) + sum(other_runner.ready.values()) == 2000
    states = restarted.engine.get_many([t.id for t in tasks])
    assert {t.id for t in states.values() if t.state is TaskState.FAILED} == {t.id for t in again}
    assert sum(1 for t in states.values() if t.state is TaskState.QUEUED) == 1990


def test_a_chunk_that_fails_half_way_changes_nothing_and_the_next_run_does_it(h, monkeypatch):
    tasks = _many(h, 100, queue="q")
    _fail_all(h, tasks)
    record, _ = h.engine.start_bulk(RETRY, TaskFilter(queue="q"), chunk_size=40)
    real = h.engine._retry
    calls = []

    def crashing(tx, chunk, now, changes):
        calls.append(len(chunk))
        real(tx, chunk, now, changes)  # written, then the transaction is undone
        if len(calls) == 2:
            raise RuntimeError("the server died in the middle of a chunk")
        return {}

    monkeypatch.setattr(h.engine, "_retry", crashing)
    with pytest.raises(RuntimeError):
        h.engine.run_bulk(record.id)
    monkeypatch.undo()

    half = h.engine.bulk(record.id)
    assert (half.matched, half.changed, half.chunks) == (40, 40, 1)
    assert (
        sum(
            1
            for t in h.engine.get_many([t.id for t in tasks]).values()
            if t.state is TaskState.QUEUED
        )
        == 40
    )

    done = h.engine.run_bulk(record.id)
    assert (done.state, done.matched, done.changed, done.skipped) == (BulkState.DONE, 100, 100, 0)


def test_a_runner_leaves_an_action_another_one_holds_until_its_claim_lapses(h):
    _many(h, 10, queue="q")
    record, _ = h.engine.start_bulk(CANCEL, TaskFilter(queue="q"), chunk_size=3)
    first, more = h.engine.run_bulk_chunk(record.id, "a")
    assert more and first.runner == "a" and first.matched == 3

    held, more = h.engine.run_bulk_chunk(record.id, "b")
    assert not more and held.matched == 3, "b does nothing while a holds it"
    h.clock.advance(CLAIM_S + 1)
    taken, more = h.engine.run_bulk_chunk(record.id, "b")
    assert more and taken.runner == "b" and taken.matched == 6
    h.engine.release_bulk(record.id, "b")
    assert h.engine.unclaimed_bulks() == [record.id], "released: any server's timers take it up"


def test_asking_again_with_the_same_key_returns_the_same_action(h):
    _many(h, 5, queue="q")
    where = TaskFilter(queue="q", states=(TaskState.QUEUED, TaskState.PENDING))
    first, created = h.engine.start_bulk(CANCEL, where, key="tidy-up")
    assert created
    again, created = h.engine.start_bulk(
        CANCEL, replace(where, states=where.states[::-1]), key="tidy-up"
    )
    assert (again.id, created) == (first.id, False)
    with pytest.raises(ConflictError):
        h.engine.start_bulk(RETRY, where, key="tidy-up")
    with pytest.raises(ConflictError):
        h.engine.start_bulk(CANCEL, TaskFilter(queue="other"), key="tidy-up")


# ---- the rules, task by task --------------------------------------------------------------------


def test_delete_skips_running_tasks_and_cancel_kills_them(h):
    failed = _many(h, 2, queue="q")
    _fail_all(h, failed)
    running = _many(h, 3, queue="q")
    w = h.worker(queues=["q"])
    leases = h.lease(w, 10)
    assert len(leases) == 3
    waiting = _many(h, 3, queue="q")

    record, _ = h.engine.start_bulk(DELETE, TaskFilter(queue="q"))
    deleted = h.engine.run_bulk(record.id)

    assert (deleted.matched, deleted.changed, deleted.skipped) == (8, 5, 3)
    assert set(h.engine.get_many([t.id for t in running + waiting + failed])) == {
        t.id for t in running
    }

    record, _ = h.engine.start_bulk(CANCEL, TaskFilter(queue="q"))
    cancelled = h.engine.run_bulk(record.id)

    assert (cancelled.matched, cancelled.changed, cancelled.skipped) == (3, 3, 0)
    assert h.states(*running) == [TaskState.CANCELLED] * 3
    reply = h.engine.heartbeat(w.id, [(a.task_id, a.token) for a in leases])
    assert sorted(reply.stop) == sorted(t.id for t in running), "killed on their worker"
    assert [a.outcome for t in running for a in h.engine.attempts(t.id)] == [Outcome.CANCELLED] * 3


def test_delete_removes_a_task_with_the_live_tasks_waiting_on_it_but_not_without_them(h):
    parent, child = h.submit_batch(
        {"name": "p", "queue": "q"}, {"name": "c", "queue": "r", "depends_on": ["p"]}
    )
    record, _ = h.engine.start_bulk(DELETE, TaskFilter(queue="q"))
    alone = h.engine.run_bulk(record.id)
    assert (alone.changed, alone.skipped) == (0, 1), "its dependent is live and stays"

    record, _ = h.engine.start_bulk(DELETE, TaskFilter(ids=(parent.id, child.id)))
    both = h.engine.run_bulk(record.id)
    assert (both.changed, both.skipped) == (2, 0)
    assert h.engine.get_many([parent.id, child.id]) == {}


@pytest.mark.parametrize("chunk_size", [1, 500])
def test_a_bulk_retry_brings_back_the_tasks_that_failed_only_because_of_a_retried_one(
    h, chunk_size
):
    parent, child = h.submit_batch({"name": "p"}, {"name": "c", "depends_on": ["p"]})
    w = h.worker()
    h.fail(w, h.lease_one(w))
    assert h.state(child.id) is TaskState.FAILED

    record, _ = h.engine.start_bulk(
        RETRY, TaskFilter(states=(TaskState.FAILED,)), chunk_size=chunk_size
    )
    done = h.engine.run_bulk(record.id)

    assert h.states(parent, child) == [TaskState.QUEUED, TaskState.PENDING]
    assert done.skipped == 0
    assert done.changed == (
        2 if chunk_size == 500 else 1
    )  # one chunk: both; else the child no longer matches


def test_a_bulk_retry_skips_a_task_whose_dependency_is_still_unsuccessful(h):
    _parent, child = h.submit_batch(
        {"name": "p", "queue": "q"}, {"name": "c", "queue": "r", "depends_on": ["p"]}
    )
    w = h.worker(queues=["q"])
    h.fail(w, h.lease_one(w))

    record, _ = h.engine.start_bulk(RETRY, TaskFilter(queue="r"))
    done = h.engine.run_bulk(record.id)

    assert (done.matched, done.changed, done.skipped) == (1, 0, 1)
    assert h.state(child.id) is TaskState.FAILED


# ---- the failure view ---------------------------------------------------------------------------


def test_failures_are_grouped_by_error_message_largest_first(h):
    batch = h.submit_batch(
        *({"name": f"t{i}", "queue": "q"} for i in range(6)),
        {"name": "after", "queue": "q", "depends_on": ["t0"]},
    )
    w = h.worker(queues=["q"])
    errors = ["disk full", "disk full", "disk full", "timeout", None, "timeout"]
    for error in errors:
        a = h.lease_one(w)
        h.report(w, a, Outcome.TIMED_OUT if error == "timeout" else Outcome.FAILED, error=error)
        h.clock.advance(1)

    found = h.engine.failure_groups()

    assert [(g.error, g.count) for g in found.groups] == [
        ("disk full", 3), ("timeout", 2), ("", 1), (None, 1),
    ]  # fmt: skip
    assert (found.scanned, found.complete) == (7, True)
    assert found.groups[1].last_finished_at == h.clock.now() - timedelta(seconds=1)
    small = h.engine.failure_groups(window=3, limit=1)
    assert (small.scanned, small.complete, len(small.groups)) == (3, False, 1)
    assert batch[-1].id  # the dependent is what the None group counts
