"""What users do to tasks: cancel, retry, delete."""

from __future__ import annotations

import pytest

from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.errors import ConflictError, NotFoundError, StaleTokenError

QUICK_RETRY = {"backoff_s": 1, "jitter": 0}


def _finished(h, how):
    """A task brought to the terminal state `how`; returns it."""
    task = h.submit(queue=f"q-{how}")
    w = h.worker(f"w-{how}", queues=[task.queue])
    if how == "cancelled":
        h.engine.cancel(task.id)
        return task
    a = h.lease_one(w)
    outcome = {
        "succeeded": Outcome.SUCCEEDED,
        "failed": Outcome.FAILED,
        "timed_out": Outcome.TIMED_OUT,
    }[how]
    h.report(w, a, outcome)
    return task


# ---- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["queued", "waiting-on-time", "waiting-on-parent", "waiting-on-backoff"]
)
def test_cancelling_a_task_that_is_not_running(h, how):
    if how == "waiting-on-parent":
        _parent, task = h.submit_batch({"name": "p"}, {"name": "c", "depends_on": ["p"]})
    elif how == "waiting-on-backoff":
        task = h.submit(max_retries=1, retry={"backoff_s": 60, "jitter": 0})
        first = h.worker("first")
        h.fail(first, h.lease_one(first))
        assert h.state(task.id) is TaskState.PENDING
    else:
        task = h.submit(delay_s=60 if how == "waiting-on-time" else None)
    recorder = h.record_events()

    cancelled = h.engine.cancel(task.id)

    assert cancelled.state is TaskState.CANCELLED
    got = h.get(task.id)
    assert got.state is TaskState.CANCELLED
    assert got.reason is Reason.CANCELLED_BY_USER
    assert got.finished_at == h.clock.now()
    assert task.id in recorder.finished
    h.clock.advance(3600)
    w = h.worker()
    while leased := h.lease(w):  # the parent, if any, runs; the cancelled task never does
        assert task.id not in [a.task_id for a in leased]
        for a in leased:
            h.succeed(w, a)
    assert h.state(task.id) is TaskState.CANCELLED
    assert len(h.engine.attempts(task.id)) == (1 if how == "waiting-on-backoff" else 0)


def test_cancelling_a_running_task_refuses_its_report_and_stops_its_heartbeat(h):
    task = h.submit(max_retries=3)
    w = h.worker()
    a = h.lease_one(w)
    h.clock.advance(2)
    recorder = h.record_events()

    assert h.engine.cancel(task.id).state is TaskState.CANCELLED

    got = h.get(task.id)
    assert got.state is TaskState.CANCELLED
    assert got.reason is Reason.CANCELLED_BY_USER
    assert got.worker_id is None
    assert got.retries_used == 0
    assert task.id in recorder.finished
    [attempt] = h.engine.attempts(task.id)
    assert attempt.outcome is Outcome.CANCELLED
    assert attempt.finished_at == h.clock.now()

    reply = h.engine.heartbeat(w.id, [(task.id, a.token)])
    assert reply.stop == [task.id]
    assert reply.extended == []

    with pytest.raises(StaleTokenError):
        h.succeed(w, a, result="too late")
    got = h.get(task.id)
    assert got.state is TaskState.CANCELLED
    assert got.result is None
    assert h.engine.attempts(task.id)[0].outcome is Outcome.CANCELLED

    # a cancelled task is never leased again, and lease expiry does not revive it
    h.clock.advance(3600)
    h.engine.tick()
    assert h.lease(h.worker("other")) == []
    assert h.state(task.id) is TaskState.CANCELLED


@pytest.mark.parametrize("how", ["succeeded", "failed", "timed_out", "cancelled"])
def test_cancelling_a_finished_task_is_a_conflict(h, how):
    task = _finished(h, how)
    before = h.get(task.id)

    with pytest.raises(ConflictError) as err:
        h.engine.cancel(task.id)

    assert how in str(err.value)
    assert h.get(task.id) == before


def test_cancelling_an_unknown_task_is_not_found(h):
    with pytest.raises(NotFoundError):
        h.engine.cancel("no-such-task")


@pytest.mark.parametrize("parent_running", [False, True])
def test_cancelling_a_parent_fails_its_descendants_transitively(h, parent_running):
    tasks = h.submit_batch(
        {"name": "root"},
        {"name": "a", "depends_on": ["root"]},
        {"name": "b", "depends_on": ["a"]},
        {"name": "c", "depends_on": ["b"], "delay_s": 10},
        {"name": "d", "depends_on": ["a", "c"]},
        {"name": "free"},
    )
    root, *descendants, free = tasks
    w = h.worker()
    if parent_running:
        assert h.lease_one(w).task_id == root.id

    h.engine.cancel(root.id)

    assert h.state(root.id) is TaskState.CANCELLED
    for task in descendants:
        got = h.get(task.id)
        assert (got.state, got.reason) == (TaskState.FAILED, Reason.DEPENDENCY_FAILED), task.name
    assert h.state(free.id) is TaskState.QUEUED
    counts = {c.state: c.count for c in h.engine.counts()}
    assert counts == {TaskState.CANCELLED: 1, TaskState.FAILED: 4, TaskState.QUEUED: 1}


def test_cancelling_a_child_leaves_its_parent_alone(h):
    parent, child = h.submit_batch({"name": "p"}, {"name": "c", "depends_on": ["p"]})
    w = h.worker()

    h.engine.cancel(child.id)
    h.run_next(w)

    assert h.states(parent, child) == [TaskState.SUCCEEDED, TaskState.CANCELLED]


# ---- retry ----------------------------------------------------------------------------------


def test_retrying_a_failed_task_restores_its_retries_and_requeues_it(h):
    task = h.submit(max_retries=1, retry=QUICK_RETRY)
    w = h.worker()
    h.fail(w, h.lease_one(w))
    h.clock.advance(1)
    h.fail(w, h.lease_one(w))
    assert h.get(task.id).reason is Reason.RETRIES_EXHAUSTED
    recorder = h.record_events()

    retried = h.engine.retry(task.id)

    assert retried.state is TaskState.QUEUED
    got = h.get(task.id)
    assert got.state is TaskState.QUEUED
    assert got.retries_used == 0
    assert got.reason is None
    assert got.error is None
    assert got.finished_at is None
    assert "default" in recorder.ready_queues

    a = h.lease_one(w)
    assert a.token == 3  # tokens keep growing: old leases stay stale
    assert h.fail(w, a) is TaskState.PENDING  # the restored retry is spent again
    assert len(h.engine.attempts(task.id)) == 3


@pytest.mark.parametrize("how", ["failed", "timed_out", "cancelled"])
def test_a_task_that_ended_unsuccessfully_can_be_retried_and_succeed(h, how):
    task = _finished(h, how)

    h.engine.retry(task.id)

    w = h.worker("again", queues=[task.queue])
    h.run_next(w, result="second time")
    got = h.get(task.id)
    assert got.state is TaskState.SUCCEEDED
    assert got.result == "second time"


def test_retrying_a_task_that_hit_the_delivery_limit_gives_it_fresh_deliveries(h):
    task = h.submit()
    w = h.worker()
    for _ in range(h.engine.settings.delivery_limit):
        h.lease_one(w)
        h.clock.advance(h.engine.settings.lease_s + 1)
        h.engine.expire_leases()
    assert h.get(task.id).reason is Reason.DELIVERY_LIMIT

    h.engine.retry(task.id)

    assert h.get(task.id).deliveries == 0
    h.lease_one(w)
    h.clock.advance(h.engine.settings.lease_s + 1)
    h.engine.expire_leases()
    assert h.state(task.id) is TaskState.QUEUED  # one more expiry is free again


def test_retrying_a_failed_parent_revives_its_dependency_failed_descendants(h):
    parent, child, grandchild, other = h.submit_batch(
        {"name": "parent"},
        {"name": "child", "depends_on": ["parent"]},
        {"name": "grandchild", "depends_on": ["child"]},
        {"name": "other"},
    )
    w = h.worker()
    leased = {a.task_id: a for a in h.lease(w, 2)}
    h.fail(w, leased[parent.id])
    h.fail(w, leased[other.id])
    assert h.get(grandchild.id).reason is Reason.DEPENDENCY_FAILED

    h.engine.retry(parent.id)

    assert h.states(parent, child, grandchild, other) == [
        TaskState.QUEUED,
        TaskState.PENDING,
        TaskState.PENDING,
        TaskState.FAILED,
    ]
    for task in (child, grandchild):
        got = h.get(task.id)
        assert got.reason is None
        assert got.error is None
        assert got.deps_left == 1

    order = [h.run_next(w).task_id for _ in range(3)]
    assert order == [parent.id, child.id, grandchild.id]
    assert h.states(parent, child, grandchild) == [TaskState.SUCCEEDED] * 3


def test_retrying_one_failed_parent_leaves_a_child_of_another_failed_parent_failed(h):
    a, b, child = h.submit_batch(
        {"name": "a"}, {"name": "b"}, {"name": "child", "depends_on": ["a", "b"]}
    )
    w = h.worker()
    for lease in h.lease(w, 2):
        h.fail(w, lease)

    h.engine.retry(a.id)

    # b is still failed, so the child still cannot run: it must not wait forever in pending
    got = h.get(child.id)
    assert (got.state, got.reason) == (TaskState.FAILED, Reason.DEPENDENCY_FAILED)
    h.run_next(w)
    assert h.state(a.id) is TaskState.SUCCEEDED
    assert h.state(child.id) is TaskState.FAILED

    # retrying the other parent too brings the child back, and it runs
    h.engine.retry(b.id)
    assert h.get(child.id).deps_left == 1
    h.run_next(w)
    assert h.leased_ids(w) == [child.id]


def test_retrying_a_root_revives_a_descendant_reached_by_paths_of_different_lengths(h):
    root, mid, bottom = h.submit_batch(
        {"name": "root"},
        {"name": "mid", "depends_on": ["root"]},
        {"name": "bottom", "depends_on": ["root", "mid"]},
    )
    w = h.worker()
    h.fail(w, h.lease_one(w))

    h.engine.retry(root.id)

    assert h.states(root, mid, bottom) == [TaskState.QUEUED, TaskState.PENDING, TaskState.PENDING]
    assert h.get(bottom.id).deps_left == 2
    assert [h.run_next(w).task_id for _ in range(3)] == [root.id, mid.id, bottom.id]


@pytest.mark.parametrize("how", ["succeeded", "running", "queued", "pending"])
def test_retrying_a_task_that_did_not_end_unsuccessfully_is_a_conflict(h, how):
    if how == "succeeded":
        task = _finished(h, "succeeded")
    elif how == "pending":
        task = h.submit(delay_s=60)
    else:
        task = h.submit()
        if how == "running":
            h.lease_one(h.worker())
    before = h.get(task.id)

    with pytest.raises(ConflictError) as err:
        h.engine.retry(task.id)

    assert how in str(err.value)
    assert h.get(task.id) == before


def test_retrying_a_dependency_failed_task_whose_parent_still_failed_is_a_conflict(h):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()
    h.fail(w, h.lease_one(w))
    before = h.get(child.id)

    with pytest.raises(ConflictError) as err:
        h.engine.retry(child.id)

    assert "parent" in str(err.value)
    assert h.get(child.id) == before
    assert h.state(parent.id) is TaskState.FAILED


def test_retrying_a_task_whose_parent_was_deleted_is_a_conflict_not_a_crash(h):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()
    h.run_next(w)
    h.fail(w, h.lease_one(w))
    h.engine.delete(parent.id)  # allowed: its only dependent has finished

    with pytest.raises(ConflictError) as err:
        h.engine.retry(child.id)

    assert parent.id in str(err.value)
    assert h.state(child.id) is TaskState.FAILED


def test_retrying_an_unknown_task_is_not_found(h):
    with pytest.raises(NotFoundError):
        h.engine.retry("no-such-task")


# ---- delete ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["succeeded", "failed", "timed_out", "cancelled"])
def test_a_finished_task_can_be_deleted_with_its_attempts(h, how):
    task = _finished(h, how)
    keep = h.submit(name="keep")
    before = sum(c.count for c in h.engine.counts())

    h.engine.delete(task.id)

    with pytest.raises(NotFoundError):
        h.get(task.id)
    assert h.engine.attempts(task.id) == []
    assert h.engine.get_many([task.id, keep.id]).keys() == {keep.id}
    assert sum(c.count for c in h.engine.counts()) == before - 1
    assert task.id not in [t.id for t in h.engine.list_tasks()]


def test_a_queued_task_without_dependents_can_be_deleted(h):
    task = h.submit()

    h.engine.delete(task.id)

    assert h.lease(h.worker()) == []
    assert h.engine.counts() == []


def test_a_running_task_cannot_be_deleted(h):
    task = h.submit()
    h.lease_one(h.worker())

    with pytest.raises(ConflictError, match="running"):
        h.engine.delete(task.id)

    assert h.state(task.id) is TaskState.RUNNING


@pytest.mark.parametrize("child_state", ["pending", "queued", "running"])
def test_a_task_with_live_dependents_cannot_be_deleted(h, child_state):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()
    if child_state != "pending":
        h.run_next(w)
        if child_state == "running":
            h.lease_one(w)
    assert h.state(child.id).value == child_state

    with pytest.raises(ConflictError, match="child"):
        h.engine.delete(parent.id)

    assert h.get(parent.id).id == parent.id


def test_a_task_whose_dependents_all_finished_can_be_deleted(h):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()
    h.run_next(w)
    h.run_next(w)

    h.engine.delete(parent.id)

    with pytest.raises(NotFoundError):
        h.get(parent.id)
    assert h.state(child.id) is TaskState.SUCCEEDED


def test_a_waiting_child_can_be_deleted_and_its_parent_still_finishes(h):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()

    h.engine.delete(child.id)
    h.run_next(w)

    assert h.state(parent.id) is TaskState.SUCCEEDED
    with pytest.raises(NotFoundError):
        h.get(child.id)
    assert h.lease(w) == []
    h.engine.delete(parent.id)  # no dependents left
    assert h.engine.counts() == []


def test_deleting_an_unknown_task_is_not_found(h):
    with pytest.raises(NotFoundError):
        h.engine.delete("no-such-task")
