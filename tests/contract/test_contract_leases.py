"""Leases and fencing, heartbeats, lease expiry, the delivery limit, dead and departed workers,
exactly-once recording, and what every attempt records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.core.models import WorkerState
from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.engine import Report
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError, StaleTokenError


def _expire_lease(h):
    h.clock.advance(h.engine.settings.lease_s + 0.001)
    return h.engine.expire_leases()


# ---- tokens ---------------------------------------------------------------------------------


def test_each_lease_carries_the_attempt_number_as_its_token(h):
    task = h.submit(max_retries=3, retry={"backoff_s": 0, "jitter": 0})
    w = h.worker()

    tokens = []
    for _ in range(3):
        a = h.lease_one(w)
        tokens.append(a.token)
        assert h.get(task.id).attempts == a.token
        h.fail(w, a)

    assert tokens == [1, 2, 3]
    assert [a.number for a in h.engine.attempts(task.id)] == [1, 2, 3]


def test_a_lease_records_its_worker_and_expiry(h):
    task = h.submit()
    w = h.worker()
    now = h.clock.now()

    a = h.lease_one(w)

    assert a.lease_expires_at == now + timedelta(seconds=h.engine.settings.lease_s)
    got = h.get(task.id)
    assert got.state is TaskState.RUNNING
    assert got.worker_id == w.id
    assert got.lease_expires_at == a.lease_expires_at
    assert got.started_at == now
    [attempt] = h.engine.attempts(task.id)
    assert attempt.worker_id == w.id
    assert attempt.started_at == now
    assert attempt.outcome is None
    assert attempt.finished_at is None


# ---- heartbeats -----------------------------------------------------------------------------


def test_a_heartbeat_extends_the_lease(h):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)

    h.clock.advance(h.engine.settings.lease_s - 1)
    reply = h.engine.heartbeat(w.id, [(a.task_id, a.token)])
    assert reply.extended == [task.id]
    assert reply.stop == []
    assert h.get(task.id).lease_expires_at == h.clock.now() + timedelta(
        seconds=h.engine.settings.lease_s
    )

    h.clock.advance(h.engine.settings.lease_s - 1)  # past the first expiry, within the extended one
    assert h.engine.expire_leases() == 0
    assert h.state(task.id) is TaskState.RUNNING
    assert h.succeed(w, a, "done") is TaskState.SUCCEEDED


def test_a_heartbeat_records_that_the_worker_lives_and_its_metrics(h):
    w = h.worker()
    h.clock.advance(3)

    reply = h.engine.heartbeat(w.id, [], {"cpu_percent": 12.5})

    assert reply.drain is False
    got = h.engine.worker(w.id)
    assert got.last_seen_at == h.clock.now()
    assert got.metrics == {"cpu_percent": 12.5}


def test_a_heartbeat_with_a_stale_token_is_told_to_stop(h):
    task = h.submit()
    w = h.worker()
    old = h.lease_one(w)
    _expire_lease(h)
    new = h.lease_one(w)
    assert new.token == old.token + 1

    reply = h.engine.heartbeat(w.id, [(task.id, old.token), (task.id, new.token)])

    assert reply.stop == [task.id]
    assert reply.extended == [task.id]


@pytest.mark.parametrize("why", ["other-worker", "unknown-task", "finished"])
def test_a_heartbeat_for_a_lease_the_worker_does_not_hold_is_told_to_stop(h, why):
    task = h.submit()
    w, other = h.worker("w"), h.worker("other")
    a = h.lease_one(w)
    held = (task.id, a.token)
    if why == "other-worker":
        reply = h.engine.heartbeat(other.id, [held])
    elif why == "unknown-task":
        held = ("no-such-task", 1)
        reply = h.engine.heartbeat(w.id, [held])
    else:
        h.succeed(w, a)
        reply = h.engine.heartbeat(w.id, [held])

    assert reply.stop == [held[0]]
    assert reply.extended == []


def test_a_heartbeat_for_another_workers_lease_does_not_extend_it(h):
    task = h.submit()
    w, other = h.worker("w"), h.worker("other")
    a = h.lease_one(w)
    expires = h.get(task.id).lease_expires_at

    h.clock.advance(5)
    h.engine.heartbeat(other.id, [(task.id, a.token)])

    assert h.get(task.id).lease_expires_at == expires


def test_an_unknown_worker_cannot_heartbeat_or_lease(h):
    with pytest.raises(NotFoundError):
        h.engine.heartbeat("no-such-worker", [])
    for look_first in (False, True):
        with pytest.raises(NotFoundError):
            h.engine.lease("no-such-worker", 1, look_first=look_first)


# ---- lease expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 2])
def test_an_expired_lease_requeues_the_task_without_spending_a_retry(h, max_retries):
    task = h.submit(max_retries=max_retries)
    w = h.worker()
    a = h.lease_one(w)

    h.clock.advance(h.engine.settings.lease_s - 0.001)
    assert h.engine.expire_leases() == 0
    assert h.state(task.id) is TaskState.RUNNING

    h.clock.advance(0.002)
    assert h.engine.expire_leases() == 1

    got = h.get(task.id)
    assert got.state is TaskState.QUEUED
    assert got.retries_used == 0
    assert got.worker_id is None
    assert got.lease_expires_at is None
    [attempt] = h.engine.attempts(task.id)
    assert attempt.outcome is Outcome.LOST
    assert attempt.finished_at == h.clock.now()
    assert h.engine.expire_leases() == 0  # safe to run twice

    again = h.lease_one(w)
    assert again.task_id == task.id
    assert again.token == a.token + 1


def test_a_report_with_the_token_of_an_expired_lease_is_refused_and_changes_nothing(h):
    task = h.submit(max_retries=1)
    w1, w2 = h.worker("w1"), h.worker("w2")
    old = h.lease_one(w1)
    _expire_lease(h)
    new = h.lease_one(w2)
    before = h.get(task.id)
    attempts_before = h.engine.attempts(task.id)

    with pytest.raises(StaleTokenError) as err:
        h.succeed(w1, old, result="late")
    assert str(new.token) in str(err.value)

    [ack] = h.engine.report(w1.id, [Report(task.id, old.token, Outcome.FAILED, error="late")])
    assert ack.accepted is False
    assert ack.state is TaskState.RUNNING
    assert ack.detail

    assert h.get(task.id) == before
    assert h.engine.attempts(task.id) == attempts_before

    # the current lease is still good
    assert h.succeed(w2, new, result="on time") is TaskState.SUCCEEDED
    assert h.get(task.id).result == "on time"


def test_a_stale_token_is_refused_even_from_the_worker_that_holds_the_new_lease(h):
    task = h.submit()
    w = h.worker()
    old = h.lease_one(w)
    _expire_lease(h)
    new = h.lease_one(w)

    with pytest.raises(StaleTokenError):
        h.fail(w, old)

    assert h.state(task.id) is TaskState.RUNNING
    assert h.get(task.id).attempts == new.token


def test_a_report_from_a_worker_that_does_not_hold_the_lease_is_refused(h):
    task = h.submit()
    w, other = h.worker("w"), h.worker("other")
    a = h.lease_one(w)

    with pytest.raises(StaleTokenError):
        h.succeed(other, a)

    assert h.state(task.id) is TaskState.RUNNING


def test_a_report_for_an_unknown_task(h):
    w = h.worker()
    report = Report("no-such-task", 1, Outcome.SUCCEEDED)

    [ack] = h.engine.report(w.id, [report])
    assert ack.accepted is False
    assert ack.state is None
    with pytest.raises(NotFoundError):
        h.engine.report_one(w.id, report)


def test_a_report_after_expiry_but_before_re_lease_does_not_resurrect_the_lease(h):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)
    _expire_lease(h)

    with pytest.raises(StaleTokenError):
        h.succeed(w, a)

    assert h.state(task.id) is TaskState.QUEUED


# ---- delivery limit -------------------------------------------------------------------------


def test_a_task_whose_lease_keeps_expiring_fails_at_the_delivery_limit(h):
    task, child = h.submit_batch(
        {"name": "poison", "max_retries": 3}, {"name": "child", "depends_on": ["poison"]}
    )
    w = h.worker()

    for delivery in range(1, h.engine.settings.delivery_limit + 1):
        a = h.lease_one(w)
        assert a.token == delivery
        assert _expire_lease(h) == 1

    got = h.get(task.id)
    assert got.state is TaskState.FAILED
    assert got.reason is Reason.DELIVERY_LIMIT
    assert got.retries_used == 0
    assert got.deliveries == h.engine.settings.delivery_limit
    attempts = h.engine.attempts(task.id)
    assert len(attempts) == h.engine.settings.delivery_limit
    assert {a.outcome for a in attempts} == {Outcome.LOST}
    assert h.lease(w) == []
    assert h.get(child.id).reason is Reason.DEPENDENCY_FAILED


def test_failures_count_towards_the_delivery_limit(h):
    task = h.submit(max_retries=50, retry={"backoff_s": 0, "jitter": 0})
    w = h.worker()

    for _ in range(h.engine.settings.delivery_limit):
        h.fail(w, h.lease_one(w))

    got = h.get(task.id)
    assert got.state is TaskState.FAILED
    assert got.reason is Reason.DELIVERY_LIMIT
    assert h.lease(w) == []


def test_a_dead_worker_delivery_counts_towards_the_limit(h):
    task = h.submit()
    for n in range(h.engine.settings.delivery_limit):
        w = h.worker(f"w{n}")
        h.lease_one(w)
        h.clock.advance(max(h.engine.settings.lease_s, h.engine.settings.worker_dead_after_s) + 1)
        assert h.engine.expire_workers() == 1

    got = h.get(task.id)
    assert got.state is TaskState.FAILED
    assert got.reason is Reason.DELIVERY_LIMIT


# ---- dead and departed workers --------------------------------------------------------------


def test_a_silent_worker_is_declared_dead_and_its_tasks_requeued_for_free(h):
    t1 = h.submit(max_retries=1)
    t2 = h.submit()
    idle = h.submit(queue="elsewhere")
    w = h.worker()
    survivor = h.worker("survivor", queues=["elsewhere"])
    h.lease(w, 2)
    h.lease_one(survivor)

    h.clock.advance(h.engine.settings.lease_s - 1)
    h.engine.heartbeat(survivor.id, [(idle.id, 1)])
    h.clock.advance(1.5)  # w silent for longer than its leases and dead_after_s, survivor 1.5 s
    recorder = h.record_events()

    assert h.engine.expire_workers() == 1

    assert h.engine.worker(w.id).state is WorkerState.DEAD
    assert h.engine.worker(survivor.id).state is WorkerState.ALIVE
    for task in (t1, t2):
        got = h.get(task.id)
        assert got.state is TaskState.QUEUED
        assert got.retries_used == 0
        assert got.worker_id is None
        [attempt] = h.engine.attempts(task.id)
        assert attempt.outcome is Outcome.LOST
        assert attempt.error == "worker stopped heartbeating"
        assert attempt.worker_id == w.id
    assert h.state(idle.id) is TaskState.RUNNING
    assert "default" in recorder.ready_queues
    assert h.engine.expire_workers() == 0  # safe to run twice


def test_a_dead_workers_unexpired_lease_stays_its_own_until_it_runs_out(h):
    """The worker counts on a lease it was granted and may still start the task: a restarted
    server, for one, may grant a lease through a long-poll and then find the worker silent."""
    settings = h.engine.settings
    assert settings.worker_dead_after_s + 1 < settings.lease_s
    task = h.submit()
    w = h.worker()
    h.clock.advance(settings.worker_dead_after_s + 1)
    a = h.lease_one(w)  # granted to a worker the server has not heard from for a while

    assert h.engine.expire_workers() == 1

    assert h.engine.worker(w.id).state is WorkerState.DEAD
    assert h.state(task.id) is TaskState.RUNNING
    assert h.lease(h.worker("other")) == []
    with pytest.raises(ConflictError, match="register"):
        h.engine.heartbeat(w.id, [(a.task_id, a.token)])  # and so nothing extends the lease

    h.clock.advance(settings.lease_s - 0.5)
    assert h.engine.expire_leases() == 0
    h.clock.advance(1)
    assert h.engine.expire_leases() == 1
    assert h.state(task.id) is TaskState.QUEUED
    [attempt] = h.engine.attempts(task.id)
    assert attempt.outcome is Outcome.LOST
    assert attempt.finished_at >= attempt.lease_expires_at


def test_a_dead_workers_report_within_its_lease_is_recorded(h):
    task = h.submit()
    w = h.worker()
    h.clock.advance(h.engine.settings.worker_dead_after_s + 1)
    a = h.lease_one(w)
    h.engine.expire_workers()

    assert h.succeed(w, a, result="ran once") is TaskState.SUCCEEDED
    assert h.get(task.id).result == "ran once"


def test_time_in_which_no_timers_ran_counts_against_no_lease_and_no_worker(h):
    settings = h.engine.settings
    assert h.engine.bridge_outage(longer_than_s=1) == 0  # the first pass ever: nothing to bridge
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)
    gone = h.worker("gone")
    h.engine.deregister_worker(gone.id)
    lease_before = h.get(task.id).lease_expires_at
    seen_before = h.engine.worker(w.id).last_seen_at
    gone_seen = h.engine.worker(gone.id).last_seen_at
    h.clock.advance(0.5)
    assert h.engine.bridge_outage(longer_than_s=1) == 0  # an ordinary pass

    outage_s = settings.lease_s + settings.worker_dead_after_s  # every server was down
    h.clock.advance(outage_s)
    assert h.engine.bridge_outage(longer_than_s=1) == pytest.approx(outage_s)
    assert h.engine.bridge_outage(longer_than_s=1) == 0  # bridged once only

    assert h.engine.expire_leases() == 0
    assert h.engine.expire_workers() == 0
    moved = timedelta(seconds=outage_s)
    got = h.get(task.id)
    assert got.state is TaskState.RUNNING
    assert abs(got.lease_expires_at - (lease_before + moved)) < timedelta(milliseconds=1)
    [attempt] = h.engine.attempts(task.id)
    assert abs(attempt.lease_expires_at - (lease_before + moved)) < timedelta(milliseconds=1)
    assert abs(h.engine.worker(w.id).last_seen_at - (seen_before + moved)) < timedelta(
        milliseconds=1
    )
    assert h.engine.worker(gone.id).last_seen_at == gone_seen  # only live workers
    assert h.engine.heartbeat(w.id, [(a.task_id, a.token)]).extended == [a.task_id]


def test_a_heartbeating_worker_is_not_declared_dead(h):
    w = h.worker()
    task = h.submit()
    a = h.lease_one(w)

    for _ in range(10):
        h.clock.advance(h.engine.settings.heartbeat_interval_s * 2)
        h.engine.heartbeat(w.id, [(a.task_id, a.token)])
        h.engine.tick()

    assert h.engine.worker(w.id).state is WorkerState.ALIVE
    assert h.state(task.id) is TaskState.RUNNING


def test_a_dead_worker_can_neither_lease_nor_heartbeat(h):
    w = h.worker()
    h.submit()
    h.clock.advance(h.engine.settings.worker_dead_after_s + 1)
    h.engine.expire_workers()

    with pytest.raises(ConflictError, match="register"):
        h.lease(w)
    with pytest.raises(ConflictError, match="register"):
        h.engine.heartbeat(w.id, [])


def test_a_dead_workers_late_report_is_refused_and_the_new_lease_wins(h):
    task = h.submit()
    w1 = h.worker("w1")
    old = h.lease_one(w1)
    h.clock.advance(max(h.engine.settings.lease_s, h.engine.settings.worker_dead_after_s) + 1)
    h.engine.expire_workers()
    w2 = h.worker("w2")
    new = h.lease_one(w2)

    with pytest.raises(StaleTokenError):
        h.succeed(w1, old, result="from the dead")

    assert h.succeed(w2, new, result="alive") is TaskState.SUCCEEDED
    assert h.get(task.id).result == "alive"


def test_tick_declares_silent_workers_dead_and_expires_leases(h):
    task = h.submit()
    w = h.worker()
    h.lease_one(w)
    h.clock.advance(max(h.engine.settings.lease_s, h.engine.settings.worker_dead_after_s) + 1)

    h.engine.tick()

    assert h.engine.worker(w.id).state is WorkerState.DEAD
    assert h.state(task.id) is TaskState.QUEUED
    assert h.get(task.id).retries_used == 0


def test_deregistering_a_worker_requeues_its_tasks_when_their_leases_end_without_spending_retries(
    h,
):
    task = h.submit(max_retries=1)
    w = h.worker()
    a = h.lease_one(w)

    gone = h.engine.deregister_worker(w.id)

    assert gone.state is WorkerState.GONE
    assert h.engine.worker(w.id).state is WorkerState.GONE
    with pytest.raises(ConflictError):
        h.lease(w)
    with pytest.raises(ConflictError):
        h.engine.heartbeat(w.id, [(task.id, a.token)])
    # The worker may not know yet and still start or run the task: nobody else may lease it
    # before its lease has run out.
    assert h.state(task.id) is TaskState.RUNNING
    assert h.leased_ids(h.worker("early")) == []

    h.clock.advance(h.engine.settings.lease_s + 1)
    h.engine.tick()

    got = h.get(task.id)
    assert got.state is TaskState.QUEUED
    assert got.retries_used == 0
    (attempt,) = h.engine.attempts(task.id)
    assert (attempt.outcome, attempt.error) == (Outcome.LOST, "worker deregistered")
    assert h.leased_ids(h.worker("next")) == [task.id]
    with pytest.raises(StaleTokenError):
        h.succeed(w, a)


def test_deregistering_a_worker_whose_leases_ran_out_requeues_its_tasks_at_once(h):
    task = h.submit()
    w = h.worker()
    h.lease_one(w)
    h.clock.advance(h.engine.settings.lease_s + 1)

    h.engine.deregister_worker(w.id)

    assert h.state(task.id) is TaskState.QUEUED
    assert h.engine.attempts(task.id)[0].error == "worker deregistered"


def test_deregistering_an_unknown_worker_is_not_found(h):
    with pytest.raises(NotFoundError):
        h.engine.deregister_worker("no-such-worker")


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"concurrency": 0}, "concurrency"), ({"queues": []}, "queues")],
)
def test_registering_a_worker_validates_its_fields(h, fields, field):
    args = {"name": "w", "host": "h", "pid": 1, "concurrency": 1, **fields}

    with pytest.raises(InvalidSpecError) as err:
        h.engine.register_worker(**args)

    assert err.value.field == field
    assert h.engine.workers() == []


def test_registered_workers_are_listed_with_what_they_advertise(h):
    w1 = h.worker("w1", queues=["a", "b", "a"], resources={"gpu": 2}, concurrency=3)
    h.clock.advance(1)
    w2 = h.worker("w2")

    workers = h.engine.workers()

    assert [w.id for w in workers] == [w1.id, w2.id]
    got = h.engine.worker(w1.id)
    assert got.name == "w1"
    assert got.queues == ["a", "b"]
    assert got.resources == {"gpu": 2}
    assert got.concurrency == 3
    assert got.state is WorkerState.ALIVE
    with pytest.raises(NotFoundError):
        h.engine.worker("no-such-worker")


# ---- a terminal result is written once ------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        Report("", 0, Outcome.SUCCEEDED, result="second"),
        Report("", 0, Outcome.FAILED, error="second"),
        Report("", 0, Outcome.HANDED_BACK),
        Report("", 0, Outcome.CANCELLED),
    ],
    ids=lambda r: r.outcome.value,
)
def test_a_second_report_with_the_same_token_is_refused(h, second):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)
    h.succeed(w, a, result="first")
    finished = h.get(task.id)

    again = Report(task.id, a.token, second.outcome, second.result, second.error)
    with pytest.raises(StaleTokenError):
        h.engine.report_one(w.id, again)

    assert h.get(task.id) == finished
    assert h.get(task.id).result == "first"
    [attempt] = h.engine.attempts(task.id)
    assert attempt.outcome is Outcome.SUCCEEDED


def test_two_reports_for_one_lease_in_one_batch_record_only_the_first(h):
    task = h.submit(max_retries=1)
    w = h.worker()
    a = h.lease_one(w)

    acks = h.engine.report(
        w.id,
        [
            Report(task.id, a.token, Outcome.SUCCEEDED, result="first"),
            Report(task.id, a.token, Outcome.FAILED, error="second"),
        ],
    )

    assert [(ack.accepted, ack.state) for ack in acks] == [
        (True, TaskState.SUCCEEDED),
        (False, TaskState.SUCCEEDED),
    ]
    assert "already reported" in acks[1].detail
    got = h.get(task.id)
    assert got.state is TaskState.SUCCEEDED
    assert got.result == "first"
    assert got.retries_used == 0
    [attempt] = h.engine.attempts(task.id)
    assert attempt.outcome is Outcome.SUCCEEDED


def test_one_report_call_can_finish_many_tasks(h):
    tasks = [h.submit() for _ in range(3)]
    w = h.worker()
    leased = h.lease(w, 3)

    acks = h.engine.report(
        w.id,
        [
            Report(leased[0].task_id, leased[0].token, Outcome.SUCCEEDED, result=0),
            Report(leased[1].task_id, leased[1].token, Outcome.FAILED, error="x"),
            Report(leased[2].task_id, leased[2].token + 1, Outcome.SUCCEEDED),  # stale
        ],
    )

    assert [(ack.accepted, ack.state) for ack in acks] == [
        (True, TaskState.SUCCEEDED),
        (True, TaskState.FAILED),
        (False, TaskState.RUNNING),
    ]
    assert h.states(*tasks) == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RUNNING]


# ---- attempts -------------------------------------------------------------------------------


def test_every_attempt_is_recorded_with_times_worker_outcome_error_and_output(h):
    task = h.submit(max_retries=2, retry={"backoff_s": 1, "jitter": 0})
    w1, w2, w3 = h.worker("w1"), h.worker("w2"), h.worker("w3")
    t0 = h.clock.now()

    a1 = h.lease_one(w1)
    h.clock.advance(2)
    h.report(
        w1,
        a1,
        Outcome.FAILED,
        error="ValueError: bad input",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad input',
        stdout_tail="reading...\n",
        stderr_tail="warning: odd\n",
    )
    t1 = h.clock.now()

    h.clock.advance(1)
    a2 = h.lease_one(w2)
    t2 = h.clock.now()
    _expire_lease(h)
    t3 = h.clock.now()

    a3 = h.lease_one(w3)
    h.clock.advance(3)
    h.report(w3, a3, Outcome.SUCCEEDED, result=[1, 2], stdout_tail="done\n")
    t4 = h.clock.now()

    attempts = h.engine.attempts(task.id)
    assert [(a.number, a.worker_id, a.outcome) for a in attempts] == [
        (a1.token, w1.id, Outcome.FAILED),
        (a2.token, w2.id, Outcome.LOST),
        (a3.token, w3.id, Outcome.SUCCEEDED),
    ]
    first, second, third = attempts
    assert (first.started_at, first.finished_at) == (t0, t1)
    assert first.error == "ValueError: bad input"
    assert first.traceback is not None
    assert first.traceback.startswith("Traceback")
    assert first.stdout_tail == "reading...\n"
    assert first.stderr_tail == "warning: odd\n"
    assert (second.started_at, second.finished_at) == (t2, t3)
    assert second.error == "lease expired"
    assert third.finished_at == t4
    assert third.stdout_tail == "done\n"
    assert third.error is None

    got = h.get(task.id)
    assert got.started_at == t0  # the first lease
    assert got.finished_at == t4
    assert got.result == [1, 2]
    assert got.retries_used == 1
    assert got.attempts == 3


def test_an_attempt_never_starts_before_the_previous_one_ended(h):
    # On PostgreSQL a lease reads its clock before its query locks the rows it leases: another
    # server may end the previous attempt (a lease expired) in between, with a later clock. The
    # new attempt must not start (nor its lease run out) before that end: here the lease's
    # clock is set back to before the expiry, as that race leaves it.
    task = h.submit()
    w1 = h.worker("w1")
    h.lease_one(w1)
    h.clock.advance(h.engine.settings.lease_s + 1)
    h.engine.expire_leases()
    (first,) = h.engine.attempts(task.id)
    assert first.finished_at is not None
    w2 = h.worker("w2")
    h.clock.set(first.finished_at - timedelta(seconds=1))

    lease = h.lease_one(w2)

    second = h.engine.attempts(task.id)[1]
    assert second.started_at >= first.finished_at
    assert lease.lease_expires_at >= first.finished_at + timedelta(
        seconds=h.engine.settings.lease_s
    )
