"""Start times (run_at, delay_s), next_due_at, and retries with exponential backoff and jitter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.engine import Report

NO_JITTER = {"backoff_s": 10, "backoff_max_s": 1000, "jitter": 0}


# ---- start times ----------------------------------------------------------------------------


def test_a_task_with_a_future_run_at_waits_until_then(h):
    start = h.clock.now() + timedelta(seconds=60)
    task = h.submit(run_at=start)
    w = h.worker()

    assert task.state is TaskState.PENDING
    assert task.not_before == start
    assert h.lease(w) == []

    h.clock.advance(59.9)
    assert h.lease(w) == []
    assert h.state(task.id) is TaskState.PENDING

    h.clock.advance(0.1)
    assert h.leased_ids(w) == [task.id]


def test_a_task_with_a_past_run_at_is_ready_at_once(h):
    task = h.submit(run_at=h.clock.now() - timedelta(hours=1))

    assert task.state is TaskState.QUEUED


def test_a_delayed_task_waits_delay_s(h):
    task = h.submit(delay_s=30)
    w = h.worker()

    assert task.state is TaskState.PENDING
    assert task.not_before == h.clock.now() + timedelta(seconds=30)
    h.clock.advance(29)
    assert h.lease(w) == []
    h.clock.advance(1)
    assert h.leased_ids(w) == [task.id]


def test_release_due_queues_tasks_whose_time_came(h):
    early = h.submit(delay_s=5, queue="q1")
    late = h.submit(delay_s=50, queue="q2")
    recorder = h.record_events()

    assert h.engine.release_due() == 0
    h.clock.advance(10)

    assert h.engine.release_due() == 1
    assert h.states(early, late) == [TaskState.QUEUED, TaskState.PENDING]
    assert recorder.ready_queues == {"q1"}
    assert h.engine.release_due() == 0  # safe to run twice


def test_tick_releases_due_tasks(h):
    task = h.submit(delay_s=5)
    h.clock.advance(5)

    h.engine.tick()

    assert h.state(task.id) is TaskState.QUEUED


def test_next_due_at_is_the_earliest_start_among_waiting_tasks(h):
    assert h.engine.next_due_at() is None
    now = h.clock.now()
    h.submit(delay_s=100)
    h.submit(delay_s=20)
    h.submit()  # ready now: not waiting on time

    assert h.engine.next_due_at() == now + timedelta(seconds=20)

    h.clock.advance(20)
    h.engine.release_due()
    assert h.engine.next_due_at() == now + timedelta(seconds=100)

    h.clock.advance(80)
    h.engine.release_due()
    assert h.engine.next_due_at() is None


def test_next_due_at_ignores_tasks_still_waiting_on_dependencies(h):
    now = h.clock.now()
    h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"], "delay_s": 5})

    assert h.engine.next_due_at() is None

    h.run_next(h.worker())  # parent done: the child now waits on time only
    assert h.engine.next_due_at() == now + timedelta(seconds=5)


def test_a_child_with_a_start_time_waits_for_both_its_parent_and_its_time(h):
    _parent, child = h.submit_batch(
        {"name": "parent"}, {"name": "child", "depends_on": ["parent"], "delay_s": 30}
    )
    w = h.worker()
    h.run_next(w)

    assert h.state(child.id) is TaskState.PENDING
    assert h.lease(w) == []
    h.clock.advance(30)
    assert h.leased_ids(w) == [child.id]


def test_next_due_at_includes_retry_backoff(h):
    h.submit(max_retries=1, retry=NO_JITTER)
    w = h.worker()
    h.fail(w, h.lease_one(w))

    assert h.engine.next_due_at() == h.clock.now() + timedelta(seconds=10)


# ---- retries --------------------------------------------------------------------------------


def test_a_failure_with_retries_left_waits_out_its_backoff(h):
    task = h.submit(max_retries=2, retry=NO_JITTER)
    w = h.worker()

    assert h.fail(w, h.lease_one(w)) is TaskState.PENDING

    got = h.get(task.id)
    assert got.retries_used == 1
    assert got.not_before == h.clock.now() + timedelta(seconds=10)
    assert got.worker_id is None
    h.clock.advance(9.99)
    assert h.lease(w) == []
    h.clock.advance(0.01)
    assert h.lease_one(w).token == 2


def test_retries_exhausted_ends_failed(h):
    task = h.submit(max_retries=2, retry=NO_JITTER)
    w = h.worker()

    for expected in (TaskState.PENDING, TaskState.PENDING, TaskState.FAILED):
        assert h.fail(w, h.lease_one(w), error=f"boom {expected}") is expected
        h.clock.advance(1000)

    got = h.get(task.id)
    assert got.state is TaskState.FAILED
    assert got.reason is Reason.RETRIES_EXHAUSTED
    assert got.retries_used == 2
    assert got.attempts == 3
    assert got.finished_at is not None
    assert "boom" in (got.error or "")
    assert h.lease(w) == []


def test_a_success_after_a_retry_keeps_the_result(h):
    task = h.submit(max_retries=1, retry=NO_JITTER)
    w = h.worker()
    h.fail(w, h.lease_one(w))
    h.clock.advance(10)

    assert h.succeed(w, h.lease_one(w), result={"ok": 1}) is TaskState.SUCCEEDED

    got = h.get(task.id)
    assert got.result == {"ok": 1}
    assert got.error is None
    assert got.reason is None
    assert [a.outcome for a in h.engine.attempts(task.id)] == [Outcome.FAILED, Outcome.SUCCEEDED]


def _backoffs(h, task_id, failures):
    """Fail the task (alone in its queue) `failures` times and return each backoff in seconds."""
    w = h.worker(queues=[h.get(task_id).queue])
    delays = []
    for _ in range(failures):
        a = h.lease_one(w)
        assert a.task_id == task_id
        h.fail(w, a)
        got = h.get(task_id)
        if got.state is not TaskState.PENDING:
            break
        delays.append((got.not_before - h.clock.now()).total_seconds())
        h.clock.set(got.not_before)
    return delays


def test_backoff_doubles_and_is_capped_by_backoff_max_s(h):
    task = h.submit(max_retries=5, retry={"backoff_s": 2, "backoff_max_s": 12, "jitter": 0})

    assert _backoffs(h, task.id, 5) == pytest.approx([2, 4, 8, 12, 12])


def test_backoff_jitter_stays_within_its_bounds_and_varies(h):
    jitter = 0.5
    policy = {"backoff_s": 8, "backoff_max_s": 1000, "jitter": jitter}
    tasks = [h.submit(max_retries=3, retry=policy, queue=f"q{i}") for i in range(6)]

    all_delays = [_backoffs(h, t.id, 3) for t in tasks]

    for delays in all_delays:
        assert len(delays) == 3
        for n, delay in enumerate(delays, start=1):
            base = 8 * 2 ** (n - 1)
            assert base * (1 - jitter) - 1e-6 <= delay <= base + 1e-6
    first_delays = [d[0] for d in all_delays]
    assert len(set(first_delays)) > 1, "jitter should spread retries of similar tasks"


def test_backoff_jitter_never_exceeds_backoff_max_s(h):
    task = h.submit(max_retries=5, retry={"backoff_s": 5, "backoff_max_s": 12, "jitter": 1})

    delays = _backoffs(h, task.id, 5)

    assert len(delays) == 5
    assert all(0 <= d <= 12 + 1e-6 for d in delays)


@pytest.mark.parametrize(
    ("outcome", "max_retries", "state", "reason", "retries_used"),
    [
        pytest.param(Outcome.FAILED, 0, TaskState.FAILED, None, 0, id="failed-no-retries"),
        pytest.param(Outcome.FAILED, 1, TaskState.PENDING, None, 1, id="failed-retries"),
        pytest.param(Outcome.TIMED_OUT, 0, TaskState.TIMED_OUT, None, 0, id="timeout"),
        pytest.param(Outcome.TIMED_OUT, 1, TaskState.PENDING, None, 1, id="timeout-retries"),
        pytest.param(Outcome.CRASHED, 0, TaskState.FAILED, Reason.CRASHED, 0, id="crash"),
        pytest.param(Outcome.CRASHED, 1, TaskState.PENDING, None, 1, id="crash-retries"),
        pytest.param(Outcome.HANDED_BACK, 0, TaskState.QUEUED, None, 0, id="handed-back"),
        pytest.param(Outcome.HANDED_BACK, 1, TaskState.QUEUED, None, 0, id="handed-back-free"),
        pytest.param(Outcome.SUCCEEDED, 1, TaskState.SUCCEEDED, None, 0, id="success"),
    ],
)
def test_each_outcome_spends_a_retry_or_not(h, outcome, max_retries, state, reason, retries_used):
    task = h.submit(max_retries=max_retries, retry=NO_JITTER)
    w = h.worker()

    assert h.report(w, h.lease_one(w), outcome) is state

    got = h.get(task.id)
    assert got.state is state
    assert got.reason is reason
    assert got.retries_used == retries_used
    assert got.worker_id is None
    assert got.lease_expires_at is None


@pytest.mark.parametrize(
    ("outcome", "final_state"),
    [
        (Outcome.FAILED, TaskState.FAILED),
        (Outcome.TIMED_OUT, TaskState.TIMED_OUT),
        (Outcome.CRASHED, TaskState.FAILED),
    ],
)
def test_repeated_outcomes_exhaust_retries(h, outcome, final_state):
    task = h.submit(max_retries=2, retry=NO_JITTER)
    w = h.worker()

    states = []
    for _ in range(3):
        states.append(h.report(w, h.lease_one(w), outcome))
        h.clock.advance(100)

    assert states == [TaskState.PENDING, TaskState.PENDING, final_state]
    got = h.get(task.id)
    assert got.reason is Reason.RETRIES_EXHAUSTED
    assert got.retries_used == 2
    assert [a.outcome for a in h.engine.attempts(task.id)] == [outcome] * 3


def test_a_timed_out_task_without_retries_ends_timed_out(h):
    task = h.submit(timeout_s=2.5)
    w = h.worker()
    a = h.lease_one(w)

    assert a.timeout_s == 2.5
    assert h.report(w, a, Outcome.TIMED_OUT, error="killed after 2.5s") is TaskState.TIMED_OUT
    got = h.get(task.id)
    assert got.state is TaskState.TIMED_OUT
    assert got.error == "killed after 2.5s"
    assert h.engine.attempts(task.id)[0].outcome is Outcome.TIMED_OUT


def test_a_worker_cannot_report_lost(h):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)

    [ack] = h.engine.report(w.id, [Report(a.task_id, a.token, Outcome.LOST)])

    assert not ack.accepted
    assert h.state(task.id) is TaskState.RUNNING
