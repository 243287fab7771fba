"""Counts, listing with filters and cursors, engine events, and durability across a reopen."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from conveyor.core.models import WorkerState
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.engine import Report
from conveyor.store.base import TaskFilter


def _counts(h) -> dict[tuple[TaskState, str], int]:
    return {(c.state, c.queue): c.count for c in h.engine.counts()}


def _workload(h):
    """A known mix of states over two queues; returns {name: task}."""
    tasks = {
        t.name: t
        for t in h.submit_batch(
            {"name": "ok-1", "queue": "a", "labels": {"team": "red"}},
            {"name": "ok-2", "queue": "b", "labels": {"team": "blue"}},
            {"name": "bad", "queue": "a", "labels": {"team": "red"}},
            {"name": "slow", "queue": "a", "timeout_s": 1},
            {"name": "running", "queue": "b", "priority": -1},
            {"name": "queued-1", "queue": "a", "priority": -10},
            {"name": "queued-2", "queue": "b", "priority": -10, "labels": {"team": "red"}},
            {"name": "later", "queue": "b", "delay_s": 600},
            {"name": "child", "queue": "a", "depends_on": ["running"]},
            {"name": "doomed", "queue": "b", "depends_on": ["bad"]},
            {"name": "gone", "queue": "a", "delay_s": 600},
        )
    }
    w = h.worker("w", queues=["a", "b"])
    leased = {a.task_id: a for a in h.lease(w, 5)}
    by_id = {t.id: name for name, t in tasks.items()}
    assert sorted(by_id[i] for i in leased) == ["bad", "ok-1", "ok-2", "running", "slow"]
    outcomes = {
        "ok-1": Outcome.SUCCEEDED,
        "ok-2": Outcome.SUCCEEDED,
        "bad": Outcome.FAILED,
        "slow": Outcome.TIMED_OUT,
    }
    for name, outcome in outcomes.items():
        a = leased[tasks[name].id]
        h.report(w, a, outcome, result=name if outcome is Outcome.SUCCEEDED else None)
    h.engine.cancel(tasks["gone"].id)
    return tasks


EXPECTED_COUNTS = {
    (TaskState.SUCCEEDED, "a"): 1,
    (TaskState.SUCCEEDED, "b"): 1,
    (TaskState.FAILED, "a"): 1,  # bad
    (TaskState.FAILED, "b"): 1,  # doomed: dependency_failed
    (TaskState.TIMED_OUT, "a"): 1,
    (TaskState.RUNNING, "b"): 1,
    (TaskState.QUEUED, "a"): 1,
    (TaskState.QUEUED, "b"): 1,
    (TaskState.PENDING, "a"): 1,  # child
    (TaskState.PENDING, "b"): 1,  # later
    (TaskState.CANCELLED, "a"): 1,
}


# ---- counts ---------------------------------------------------------------------------------


def test_counts_match_the_states_after_a_known_workload(h):
    tasks = _workload(h)

    assert _counts(h) == EXPECTED_COUNTS
    for task in tasks.values():
        got = h.get(task.id)
        assert EXPECTED_COUNTS[(got.state, got.queue)] >= 1
    per_state = Counter(h.get(t.id).state for t in tasks.values())
    counted = Counter()
    for c in h.engine.counts():
        counted[c.state] += c.count
    assert counted == per_state
    assert sum(counted.values()) == len(tasks)


def test_counts_follow_every_transition(h):
    tasks = _workload(h)
    w = h.worker("w2", queues=["a", "b"])

    h.engine.retry(tasks["bad"].id)  # bad -> queued, doomed -> pending
    h.engine.delete(tasks["slow"].id)
    h.clock.advance(h.engine.settings.lease_s + 1)
    h.engine.expire_leases()  # running -> queued

    expected = dict(EXPECTED_COUNTS)
    expected[(TaskState.FAILED, "a")] -= 1
    expected[(TaskState.QUEUED, "a")] += 1
    expected[(TaskState.FAILED, "b")] -= 1
    expected[(TaskState.PENDING, "b")] += 1
    expected[(TaskState.TIMED_OUT, "a")] -= 1
    expected[(TaskState.RUNNING, "b")] -= 1
    expected[(TaskState.QUEUED, "b")] += 1
    assert _counts(h) == {k: v for k, v in expected.items() if v}

    # drain everything that can run, then every live task has finished or waits on time
    while leased := h.lease(w, 10):
        for a in leased:
            h.succeed(w, a)
    counts = _counts(h)
    assert counts == {
        (TaskState.SUCCEEDED, "a"): 4,  # ok-1, bad, queued-1, child
        (TaskState.SUCCEEDED, "b"): 4,  # ok-2, running, queued-2, doomed
        (TaskState.PENDING, "b"): 1,  # later
        (TaskState.CANCELLED, "a"): 1,
    }


def test_counts_are_empty_for_an_empty_store(h):
    assert h.engine.counts() == []


# ---- listing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "names"),
    [
        (TaskFilter(), None),
        (TaskFilter(states=[TaskState.QUEUED]), {"queued-1", "queued-2"}),
        (
            TaskFilter(states=[TaskState.SUCCEEDED, TaskState.TIMED_OUT]),
            {"ok-1", "ok-2", "slow"},
        ),
        (TaskFilter(states=[TaskState.FAILED]), {"bad", "doomed"}),
        (TaskFilter(queue="b"), {"ok-2", "running", "queued-2", "later", "doomed"}),
        (TaskFilter(queue="a", states=[TaskState.PENDING]), {"child"}),
        (TaskFilter(name="slow"), {"slow"}),
        (TaskFilter(name="nobody"), set()),
        (TaskFilter(labels=(("team", "red"),)), {"ok-1", "bad", "queued-2"}),
        (TaskFilter(labels=(("team", "red"),), queue="a"), {"ok-1", "bad"}),
        (TaskFilter(labels=(("team", "green"),)), set()),
        (TaskFilter(handler="noop", states=[TaskState.CANCELLED]), {"gone"}),
        (TaskFilter(handler="other"), set()),
    ],
)
def test_list_tasks_filters(h, where, names):
    tasks = _workload(h)

    listed = h.engine.list_tasks(where, limit=1000)

    expected = set(tasks) if names is None else names
    assert {t.name for t in listed} == expected
    assert len(listed) == len(expected)


def test_list_tasks_returns_newest_first(h):
    tasks = [h.submit(name=f"t{i}") for i in range(5)]

    listed = h.engine.list_tasks()

    assert [t.id for t in listed] == [t.id for t in reversed(tasks)]
    assert [t.seq for t in listed] == sorted((t.seq for t in listed), reverse=True)


@pytest.mark.parametrize("page_size", [1, 3, 7, 25, 100])
def test_cursor_pagination_returns_every_task_exactly_once(h, page_size):
    submitted = [h.submit(name=f"t{i}", queue="a" if i % 3 else "b") for i in range(25)]
    submitted += h.submit_batch(*[{"name": f"b{i}"} for i in range(5)])

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = h.engine.list_tasks(after_seq=cursor, limit=page_size)
        pages += 1
        if not page:
            break
        assert len(page) <= page_size
        seen.extend(t.id for t in page)
        cursor = page[-1].seq

    assert sorted(seen) == sorted(t.id for t in submitted)
    assert len(seen) == len(set(seen)) == 30
    assert pages == -(-30 // page_size) + 1


def test_cursor_pagination_with_a_filter_and_tasks_arriving_meanwhile(h):
    old = [h.submit(queue="b" if i % 2 else "a") for i in range(12)]
    wanted = {t.id for t in old if t.queue == "a"}

    first = h.engine.list_tasks(TaskFilter(queue="a"), limit=4)
    h.submit(queue="a")  # newer than the cursor: not in this walk
    rest = h.engine.list_tasks(TaskFilter(queue="a"), after_seq=first[-1].seq, limit=100)

    assert {t.id for t in first + rest} == wanted
    assert len(first + rest) == len(wanted)


def test_list_tasks_limit_is_clamped(h):
    for _ in range(3):
        h.submit()

    assert len(h.engine.list_tasks(limit=0)) == 1
    assert len(h.engine.list_tasks(limit=-5)) == 1


def test_get_many_returns_only_known_tasks(h):
    a, b = h.submit(), h.submit()

    found = h.engine.get_many([a.id, "no-such-task", b.id])

    assert set(found) == {a.id, b.id}
    assert h.engine.get_many([]) == {}


def test_a_stored_task_keeps_every_field_of_its_spec(h):
    run_at = h.clock.now() + timedelta(minutes=5)
    parent = h.submit()
    task = h.submit(
        handler="pkg.mod:func",
        args=[1, "two", {"three": [3.5, None, True]}],
        kwargs={"k": {"nested": ["v"]}},
        name="full",
        queue="special",
        priority=7,
        depends_on=[parent.id],
        run_at=run_at,
        timeout_s=12.5,
        max_retries=3,
        retry={"backoff_s": 2, "backoff_max_s": 30, "jitter": 0.25},
        resources={"cpu": 2, "memory_mb": 512},
        key="full-key",
        labels={"team": "red", "env": "prod"},
    )

    got = h.get(task.id)

    assert got == task
    assert got.handler == "pkg.mod:func"
    assert got.args == [1, "two", {"three": [3.5, None, True]}]
    assert got.kwargs == {"k": {"nested": ["v"]}}
    assert (got.name, got.queue, got.priority) == ("full", "special", 7)
    assert got.depends_on == [parent.id]
    assert got.not_before == run_at
    assert got.timeout_s == 12.5
    assert got.max_retries == 3
    assert (got.retry.backoff_s, got.retry.backoff_max_s, got.retry.jitter) == (2, 30, 0.25)
    assert got.resources == {"cpu": 2.0, "memory_mb": 512.0}
    assert got.key == "full-key"
    assert got.labels == {"team": "red", "env": "prod"}
    assert got.state is TaskState.PENDING
    assert got.created_at == h.clock.now()


# ---- events ---------------------------------------------------------------------------------


def test_a_subscriber_hears_of_ready_queues_and_finished_tasks(h):
    recorder = h.record_events()

    task = h.submit(queue="q1")
    assert recorder.ready == {"q1": 1}
    assert recorder.finished == set()

    recorder.clear()
    w = h.worker(queues=["q1"])
    a = h.lease_one(w)
    assert recorder.calls == []  # leasing makes nothing ready and finishes nothing

    h.succeed(w, a)
    assert recorder.finished == {task.id}


def test_events_for_tasks_becoming_ready_later(h):
    parent, child = h.submit_batch(
        {"name": "parent", "queue": "up"},
        {"name": "child", "queue": "down", "depends_on": ["parent"]},
    )
    timed = h.submit(queue="timed", delay_s=5)
    w = h.worker(queues=["up", "down"])
    recorder = h.record_events()

    h.run_next(w)
    assert recorder.ready == {"down": 1}
    assert parent.id in recorder.finished
    assert child.id not in recorder.finished

    recorder.clear()
    h.clock.advance(5)
    h.engine.release_due()
    assert recorder.ready == {"timed": 1}
    assert timed.id not in recorder.finished


def test_events_for_requeues_and_failures(h):
    flaky = h.submit(queue="f", max_retries=1, retry={"backoff_s": 0, "jitter": 0})
    lost = h.submit(queue="l")
    w = h.worker(queues=["f", "l"])
    leased = {a.task_id: a for a in h.lease(w, 2)}
    recorder = h.record_events()

    h.fail(w, leased[flaky.id])  # zero backoff: straight back to queued
    assert recorder.ready == {"f": 1}
    assert recorder.finished == set()

    recorder.clear()
    h.clock.advance(h.engine.settings.lease_s + 1)
    assert h.engine.expire_leases() == 1
    assert recorder.ready == {"l": 1}
    assert h.state(lost.id) is TaskState.QUEUED

    recorder.clear()
    h.fail(w, h.lease_one(w, queues=["f"]))
    assert recorder.finished == {flaky.id}


def test_the_event_counts_the_tasks_made_ready_in_each_queue(h):
    """A long-poll server wakes as many waiting workers as tasks got ready, so the count matters."""
    recorder = h.record_events()

    h.submit_batch(
        {"queue": "q1"},
        {"queue": "q1"},
        {"name": "first", "queue": "q2"},
        {"queue": "q2", "depends_on": ["first"]},  # pending: not ready yet
        {"queue": "q1", "delay_s": 60},  # pending until then
    )

    assert recorder.ready == {"q1": 2, "q2": 1}


def test_no_event_when_nothing_became_ready_or_finished(h):
    recorder = h.record_events()

    h.submit(delay_s=60)
    h.engine.tick()
    h.worker()

    assert recorder.calls == []


def test_an_unsubscribed_listener_hears_nothing_more(h):
    recorder = h.record_events()
    other = []
    unsubscribe = h.engine.events.subscribe(other.append)

    h.submit()
    unsubscribe()
    h.submit(queue="later")

    assert len(other) == 1
    assert recorder.ready_queues == {"default", "later"}


def test_a_failing_listener_does_not_undo_the_change(h, caplog):
    def broken(_changes):
        raise RuntimeError("listener bug")

    h.engine.events.subscribe(broken)
    recorder = h.record_events()

    task = h.submit()

    assert h.state(task.id) is TaskState.QUEUED
    assert recorder.ready_queues == {"default"}
    assert "listener" in caplog.text


# ---- persistence ----------------------------------------------------------------------------


def test_everything_survives_closing_and_reopening_the_store(h):
    tasks = _workload(h)
    w = h.engine.workers()[0]
    before_tasks = h.engine.get_many([t.id for t in tasks.values()])
    before_attempts = {t.id: h.engine.attempts(t.id) for t in tasks.values()}
    before_workers = h.engine.workers()
    before_counts = _counts(h)
    before_next_due = h.engine.next_due_at()
    h.engine.store.close()

    again = h.reopen()

    assert again.engine.get_many(list(before_tasks)) == before_tasks
    assert {t_id: again.engine.attempts(t_id) for t_id in before_tasks} == before_attempts
    assert again.engine.workers() == before_workers
    assert _counts(again) == before_counts
    assert again.engine.next_due_at() == before_next_due
    assert len(again.engine.list_tasks(limit=1000)) == len(tasks)
    assert again.engine.worker(w.id).state is WorkerState.ALIVE


def test_work_continues_after_a_reopen(h):
    tasks = _workload(h)
    w = h.engine.workers()[0]
    running = next(t for t in h.engine.list_tasks(TaskFilter(states=[TaskState.RUNNING]), limit=10))
    token = running.attempts
    h.engine.store.close()

    again = h.reopen()

    # the lease granted before the restart is still good, and releases its child
    assert (
        again.engine.report_one(w.id, Report(running.id, token, Outcome.SUCCEEDED, result="r"))
        is TaskState.SUCCEEDED
    )
    assert again.state(tasks["child"].id) is TaskState.QUEUED
    # the idempotency key index, the dependency edges and the failed state all survived
    assert again.get(tasks["doomed"].id).reason is Reason.DEPENDENCY_FAILED
    again.engine.retry(tasks["bad"].id)
    assert again.state(tasks["doomed"].id) is TaskState.PENDING
    # new tasks go after the old ones in submission order
    new = again.submit(queue="a", priority=-10)
    assert new.seq > max(t.seq for t in again.engine.list_tasks(limit=1000) if t.id != new.id)


def test_idempotency_keys_survive_a_reopen(h):
    first = h.submit(key="once")
    h.engine.store.close()

    again = h.reopen()

    assert again.submit(key="once").id == first.id
    assert sum(c.count for c in again.engine.counts()) == 1


def test_migrations_run_once_and_reopening_is_idempotent(h, store_factory):
    h.submit(name="kept")
    versions = store_factory.migration_versions()
    assert versions, "the store records the migrations it applied"
    assert len(versions) == len(set(versions))
    h.engine.store.close()

    for _ in range(3):
        again = h.reopen()
        assert [t.name for t in again.engine.list_tasks()] == ["kept"]
        again.engine.store.close()

    assert store_factory.migration_versions() == versions


def test_two_stores_on_one_database_see_each_others_commits(h, store_factory):
    other = h.reopen()

    task = h.submit()
    assert other.state(task.id) is TaskState.QUEUED

    w = other.worker()
    assert other.leased_ids(w) == [task.id]
    assert h.state(task.id) is TaskState.RUNNING
    assert h.lease(h.worker("w2")) == []


@pytest.mark.parametrize("count", [1, 3])
def test_updating_tasks_writes_every_mutable_field_and_keeps_counts(h, count):
    """One row and several rows take different statements on some stores; both must write every
    mutable field, values to nothing and nothing to values, and keep the counts by state."""
    tasks = [h.submit(name=f"t{i}") for i in range(count)]
    now = h.clock.now()
    for i, task in enumerate(tasks):
        task.state = TaskState.FAILED
        task.reason = Reason.CRASHED if i % 2 else None
        task.deps_left = 7 + i
        task.not_before = now + timedelta(seconds=i + 1)
        task.retries_used, task.attempts, task.deliveries = 1 + i, 2 + i, 3 + i
        task.result = {"n": i, "deep": [1, None]}
        task.error = f"boom {i}"
        task.worker_id = None if i % 2 else f"w{i}"
        task.lease_expires_at = now + timedelta(seconds=30)
        task.started_at = now
        task.finished_at = now + timedelta(seconds=2)
        task.updated_at = now + timedelta(seconds=2)
    with h.engine.store.transaction() as tx:
        tx.update_tasks(tasks)
    for task in tasks:
        stored = h.engine.get(task.id)
        for field in ("state", "reason", "deps_left", "not_before", "retries_used", "attempts",
                      "deliveries", "result", "error", "worker_id", "lease_expires_at",
                      "started_at", "finished_at", "updated_at"):  # fmt: skip
            assert getattr(stored, field) == getattr(task, field), field
    counted = Counter()
    for c in h.engine.counts():
        counted[c.state] += c.count
    assert counted == Counter({TaskState.FAILED: count})
