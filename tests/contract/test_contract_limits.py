"""Concurrency and rate limits, on every store: never more than N running of a key, through
every way an attempt can end; never more than R starts of a key in any window; one key's
backlog never in the way of another key's tasks; held tasks stay queued; limits are the
database's (restarts, a second engine on the same database)."""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import datetime, timedelta

import pytest

from conveyor.core.limiting import Full, Limit
from conveyor.core.models import Assignment, Task, Worker
from conveyor.core.states import Outcome, TaskState
from conveyor.errors import InvalidSpecError, NotFoundError, StaleTokenError
from conveyor.store.base import TaskFilter
from tests.contract.conftest import SETTINGS, Harness, make_harness

# ---- helpers ----------------------------------------------------------------------------------


def set_limit(h: Harness, name: str, **fields: object) -> None:
    h.engine.set_limit(Limit.model_validate({"name": name, **fields}))


def running(h: Harness, key: str | None = None) -> list[Task]:
    tasks = h.engine.list_tasks(TaskFilter(states=(TaskState.RUNNING,)), limit=1000)
    return [t for t in tasks if key is None or key in t.limits]


def submit_many(h: Harness, count: int, **fields: object) -> list[Task]:
    return h.submit_batch(*[dict(fields) for _ in range(count)])


# ---- concurrency ------------------------------------------------------------------------------


def test_no_more_than_n_run_at_once_and_the_rest_stay_queued(h: Harness) -> None:
    set_limit(h, "db", concurrency=2)
    tasks = submit_many(h, 5, limits=["db"])
    w = h.worker(concurrency=10)
    first = h.lease(w, 10)
    assert len(first) == 2
    assert h.lease(w, 10) == []
    assert [t.state for t in h.engine.get_many([t.id for t in tasks]).values()].count(
        TaskState.QUEUED
    ) == 3, "held tasks stay queued"
    h.succeed(w, first[0])
    assert len(h.lease(w, 10)) == 1
    assert len(running(h, "db")) == 2


def test_tasks_run_in_priority_then_submission_order_within_a_key(h: Harness) -> None:
    set_limit(h, "db", concurrency=1)
    low = h.submit(limits=["db"], name="low", priority=0)
    high = h.submit(limits=["db"], name="high", priority=5)
    later = h.submit(limits=["db"], name="later", priority=0)
    w = h.worker()
    order = []
    for _ in range(3):
        a = h.lease_one(w)
        order.append(a.task_id)
        h.succeed(w, a)
    assert order == [high.id, low.id, later.id]


def test_a_task_without_limits_is_not_held_back_by_a_full_one(h: Harness) -> None:
    set_limit(h, "db", concurrency=1)
    submit_many(h, 3, limits=["db"], priority=10)
    free = h.submit(name="free")
    w = h.worker(concurrency=10)
    leased = h.leased_ids(w, 10)
    assert free.id in leased and len(leased) == 2


def test_a_limit_nobody_set_holds_nothing_back_until_it_is_set(h: Harness) -> None:
    submit_many(h, 3, limits=["db"])
    w = h.worker(concurrency=10)
    assert len(h.lease(w, 10)) == 3
    set_limit(h, "db", concurrency=2)
    h.submit(limits=["db"])
    assert h.lease(w, 10) == [], "the tasks already running count against the new limit"


@pytest.mark.parametrize(
    "end",
    [
        "succeed",
        "fail",
        "fail_with_retry",
        "cancel",
        "lease_expiry",
        "dead_worker",
        "deregister",
        "deregister_stopped",
        "unstartable",
    ],
)
def test_every_way_an_attempt_ends_frees_its_slot(h: Harness, end: str) -> None:
    set_limit(h, "db", concurrency=1)
    if end == "unstartable":  # its `$result` path is not in the result: it fails at lease
        parent = h.submit(name="parent")
        w0 = h.worker("w0", concurrency=5)
        h.succeed(w0, h.lease_one(w0), result={"a": 1})
        first = h.submit(limits=["db"], args=[{"$result": parent.id, "$path": "b"}])
        assert h.engine.get(first.id).state is TaskState.QUEUED
    else:
        first = h.submit(limits=["db"], max_retries=1 if end == "fail_with_retry" else 0)
    second = h.submit(limits=["db"])
    w = h.worker("w1")
    other = h.worker("w2")
    if end == "unstartable":
        assert h.leased_ids(w) == [], "the slot went to the first, which could not start"
        assert h.leased_ids(w) == [second.id], "and it freed the slot as it failed"
        assert h.state(first.id) is TaskState.FAILED
        return
    a = h.lease_one(w)
    assert a.task_id == first.id
    assert h.lease(other) == []
    if end == "succeed":
        h.succeed(w, a)
    elif end in ("fail", "fail_with_retry"):
        h.fail(w, a)
    elif end == "cancel":
        h.engine.cancel(first.id)
    elif end == "lease_expiry":
        h.clock.advance(SETTINGS.lease_s + 1)
        assert h.engine.expire_leases() == 1
    elif end == "dead_worker":
        h.clock.advance(SETTINGS.lease_s + 1)
        h.engine.heartbeat(other.id, [])
        assert h.engine.expire_workers() == 1
    elif end == "deregister":
        h.clock.advance(SETTINGS.lease_s + 1)
        h.engine.deregister_worker(w.id)
    elif end == "deregister_stopped":
        h.engine.deregister_worker(w.id, stopped=True)
    # A lost attempt (lease over, worker dead or gone) queues its task again, ahead of the
    # second: either way, exactly one of them runs now.
    assert len(h.leased_ids(other)) == 1, f"{end} frees the slot"
    assert len(running(h, "db")) == 1


def test_a_lost_lease_counts_no_more_once_its_task_is_leased_again(h: Harness) -> None:
    set_limit(h, "db", concurrency=2)
    tasks = submit_many(h, 4, limits=["db"])
    w1 = h.worker("w1", concurrency=4)
    w2 = h.worker("w2", concurrency=4)
    assert len(h.lease(w1, 4)) == 2
    h.clock.advance(SETTINGS.lease_s + 1)
    h.engine.heartbeat(w2.id, [])
    h.engine.expire_leases()
    again = h.lease(w2, 4)
    assert len(again) == 2
    assert len(running(h, "db")) == 2
    assert {t.id for t in tasks} >= {a.task_id for a in again}


def test_never_more_than_n_through_kills_expiries_and_random_endings(h: Harness) -> None:
    """A long random run of leases, reports, cancels, retries, lease expiries, worker deaths and
    deregistrations: never more than N running of a key, and every task ends (no slot lost)."""
    rng = random.Random(7)
    set_limit(h, "db", concurrency=3)
    set_limit(h, "tenant", concurrency=1)
    specs = [
        {"limits": ["db", "tenant:{kwargs.t}"], "kwargs": {"t": f"t{i % 4}"}, "max_retries": 1}
        for i in range(60)
    ]
    tasks = h.submit_batch(*specs)
    workers: list[Worker] = [h.worker(f"w{i}", concurrency=3) for i in range(3)]
    held: dict[str, tuple[Worker, Assignment]] = {}
    for step in range(600):
        live = [w for w in workers if h.engine.worker(w.id).state.value == "alive"]
        action = rng.random()
        if action < 0.35 and live:
            w = rng.choice(live)
            for a in h.lease(w, rng.randint(1, 3)):
                held[a.task_id] = (w, a)
        elif action < 0.6 and held:
            task_id = rng.choice(sorted(held))
            w, a = held.pop(task_id)
            outcome = rng.choice([Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED])
            with contextlib.suppress(StaleTokenError):  # its lease was lost meanwhile
                h.report(w, a, outcome)
        elif action < 0.65 and held:
            task_id = rng.choice(sorted(held))
            held.pop(task_id)
            h.engine.cancel(task_id)
        elif action < 0.8:
            h.clock.advance(rng.uniform(0.5, 4))
            for w in live:
                if rng.random() < 0.8:
                    mine = [(t, a.token) for t, (ww, a) in held.items() if ww.id == w.id]
                    h.engine.heartbeat(w.id, mine)
            h.engine.tick()
        elif action < 0.85 and live:
            w = rng.choice(live)
            h.engine.deregister_worker(w.id, stopped=rng.random() < 0.5)
            workers.append(h.worker(f"w{len(workers)}", concurrency=3))
        else:
            h.clock.advance(SETTINGS.lease_s + 1)
            h.engine.tick()
        now_running = running(h)
        assert len([t for t in now_running if "db" in t.limits]) <= 3, step
        per_tenant = [k for t in now_running for k in t.limits if k.startswith("tenant:")]
        assert all(per_tenant.count(k) <= 1 for k in per_tenant), (step, per_tenant)
    # Then let everything finish: a slot that leaked would leave tasks queued for ever.
    finisher = h.worker("finisher", concurrency=10)
    for _ in range(400):
        h.clock.advance(SETTINGS.lease_s + 1)
        h.engine.heartbeat(finisher.id, [])
        h.engine.tick()
        for a in h.lease(finisher, 10):
            h.succeed(finisher, a)
        if all(t.state.is_terminal for t in h.engine.get_many([t.id for t in tasks]).values()):
            break
    states = {t.state for t in h.engine.get_many([t.id for t in tasks]).values()}
    assert all(s.is_terminal for s in states), states


def test_two_engines_on_one_database_never_give_the_same_slot_away(h: Harness) -> None:
    set_limit(h, "db", concurrency=3)
    submit_many(h, 40, limits=["db"])
    engines = [h, h.reopen(), h.reopen()]
    workers = [(e, e.worker(f"w{i}", concurrency=50)) for i, e in enumerate(engines)]
    leased: list[str] = []
    lock = threading.Lock()

    def lease_a_lot(e: Harness, w: Worker) -> None:
        for _ in range(20):
            got = e.lease(w, 5)
            with lock:
                leased.extend(a.task_id for a in got)

    threads = [threading.Thread(target=lease_a_lot, args=pair) for pair in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(leased) == 3, leased


def test_limits_are_the_databases_they_survive_a_restart(h: Harness) -> None:
    set_limit(h, "db", concurrency=1)
    submit_many(h, 2, limits=["db"])
    w = h.worker()
    assert len(h.lease(w, 5)) == 1
    again = h.reopen()
    assert [u.limit for u in again.engine.limits()] == [Limit(name="db", concurrency=1)]
    w2 = again.worker("w2")
    assert again.lease(w2, 5) == []


def test_raising_a_limit_lets_held_tasks_go_and_removing_it_lets_all_go(h: Harness) -> None:
    set_limit(h, "db", concurrency=1)
    submit_many(h, 6, limits=["db"])
    w = h.worker(concurrency=10)
    assert len(h.lease(w, 10)) == 1
    recorder = h.record_events()
    set_limit(h, "db", concurrency=3)
    assert recorder.ready_queues == {"default"}, "a change of limit wakes the long-polls"
    assert len(h.lease(w, 10)) == 2
    h.engine.delete_limit("db")
    assert len(h.lease(w, 10)) == 3
    with pytest.raises(NotFoundError):
        h.engine.delete_limit("db")


def test_a_zero_concurrency_holds_every_task_back(h: Harness) -> None:
    set_limit(h, "frozen", concurrency=0)
    task = h.submit(limits=["frozen"])
    w = h.worker()
    assert h.lease(w) == []
    assert h.state(task.id) is TaskState.QUEUED


def test_limits_list_what_each_takes_and_holds(h: Harness) -> None:
    set_limit(h, "db", concurrency=2)
    set_limit(h, "api", rate=10, per_s=60)
    submit_many(h, 5, limits=["db"])
    w = h.worker(concurrency=10)
    h.lease(w, 10)
    uses = {u.limit.name: u for u in h.engine.limits()}
    assert (uses["db"].running, uses["db"].held) == (2, 3)
    assert (uses["api"].running, uses["api"].held) == (0, 0)
    assert h.engine.limit("db").running == 2
    with pytest.raises(NotFoundError):
        h.engine.limit("nope")


# ---- keys -------------------------------------------------------------------------------------


def test_each_key_is_a_bucket_of_its_own(h: Harness) -> None:
    set_limit(h, "tenant", concurrency=1)
    acme = submit_many(h, 3, limits=["tenant:{kwargs.t}"], kwargs={"t": "acme"})
    globex = h.submit(limits=["tenant:{kwargs.t}"], kwargs={"t": "globex"})
    assert h.get(globex.id).limits == ["tenant:globex"]
    w = h.worker(concurrency=10)
    assert set(h.leased_ids(w, 10)) == {acme[0].id, globex.id}


def test_a_big_backlog_of_one_key_never_hides_another_keys_task(h: Harness) -> None:
    set_limit(h, "tenant", concurrency=2)
    set_limit(h, "db", concurrency=50)
    noisy = {"limits": ["db", "tenant:{kwargs.t}"], "kwargs": {"t": "acme"}, "priority": 9}
    h.submit_batch(*[noisy] * 3000)
    quiet = h.submit(limits=["db", "tenant:{kwargs.t}"], kwargs={"t": "globex"}, priority=0)
    plain = h.submit(name="plain", priority=-5)
    w = h.worker(concurrency=50)
    first = h.leased_ids(w, 10)
    assert quiet.id in first and plain.id in first and len(first) == 4
    assert h.lease(w, 10) == []


def test_tasks_back_in_the_queue_are_held_as_leases_reach_them(h: Harness) -> None:
    """A task that comes back to the queue (a retry, a lost lease) is in the ready index again;
    a lease that finds its key full holds it there and then, and reads on past it."""
    set_limit(h, "db", concurrency=1)
    blocker = h.submit(limits=["db"], name="blocker")
    w = h.worker(concurrency=10)
    assert h.leased_ids(w, 10) == [blocker.id]
    set_limit(h, "other", concurrency=5)
    retried = h.submit_batch(*[{"limits": ["db"], "priority": 5}] * 30)
    for t in retried:  # cancelled then retried: queued again, in the ready index
        h.engine.cancel(t.id)
        h.engine.retry(t.id)
    free = h.submit(name="free")
    assert h.leased_ids(w, 10) == [free.id]
    assert {h.get(t.id).held_on for t in retried} == {"db"}


def test_a_key_that_cannot_be_filled_in_is_refused_naming_the_field(h: Harness) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        h.submit(limits=["db", "tenant:{kwargs.tenant}"], kwargs={"other": 1})
    assert refused.value.field == "limits.1"
    with pytest.raises(InvalidSpecError) as refused:
        h.submit(limits=["shard:{args.2}"], args=[1])
    assert refused.value.field == "limits.0"


# ---- rates ------------------------------------------------------------------------------------


def test_a_rate_allows_r_starts_per_window_and_wakes_when_it_moves_on(h: Harness) -> None:
    set_limit(h, "api", rate=3, per_s=10)
    submit_many(h, 10, limits=["api"])
    w = h.worker(concurrency=20)
    t0 = h.clock.now()
    assert len(h.lease(w, 20)) == 3
    assert h.engine.next_due_at() == t0 + timedelta(seconds=10)
    h.clock.advance(9.999)
    assert h.lease(w, 20) == []
    recorder = h.record_events()
    h.clock.advance(0.001)
    h.engine.wake_limits()
    assert recorder.ready_queues == {"default"}, "the timer wakes the long-polls on time"
    assert len(h.lease(w, 20)) == 3


def test_rates_are_kept_in_every_window(h: Harness) -> None:
    rate, per_s = 4, 5.0
    set_limit(h, "api", rate=rate, per_s=per_s)
    submit_many(h, 60, limits=["api"])
    w = h.worker(concurrency=100)
    rng = random.Random(3)
    starts: list[datetime] = []
    for _ in range(300):
        h.clock.advance(rng.uniform(0, 0.6))
        for a in h.lease(w, rng.randint(1, 5)):
            starts.append(h.clock.now())
            h.succeed(w, a)
    window = timedelta(seconds=per_s)
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + window) <= rate, start
    elapsed_s = (starts[-1] - starts[0]).total_seconds()
    assert len(starts) >= rate * (elapsed_s / per_s) * 0.5, "held back no more than needed"


def test_a_limit_can_cap_both_concurrency_and_rate(h: Harness) -> None:
    set_limit(h, "api", concurrency=1, rate=2, per_s=60)
    submit_many(h, 5, limits=["api"])
    w = h.worker(concurrency=10)
    a = h.lease(w, 10)
    assert len(a) == 1
    h.succeed(w, a[0])
    b = h.lease(w, 10)
    assert len(b) == 1
    h.succeed(w, b[0])
    assert h.lease(w, 10) == [], "the rate is spent although a slot is free"


# ---- why --------------------------------------------------------------------------------------


def test_why_says_which_limit_is_full_and_how_many_are_ahead(h: Harness) -> None:
    set_limit(h, "db", concurrency=1)
    set_limit(h, "api", rate=1, per_s=30)
    tasks = submit_many(h, 4, limits=["db"])
    w = h.worker(concurrency=10)
    h.lease(w, 10)
    (wait,) = h.engine.why_limited(tasks[3].id)
    assert (wait.key, wait.full, wait.running, wait.ahead) == ("db", Full.CONCURRENCY, 1, 2)
    assert h.engine.why_limited(tasks[0].id) == [], "a running task waits on nothing"
    rated = submit_many(h, 2, limits=["api"])
    h.lease(w, 10)
    (wait,) = h.engine.why_limited(rated[1].id)
    assert wait.full is Full.RATE and wait.until == h.clock.now() + timedelta(seconds=30)


def test_a_second_engine_sees_the_limits_of_the_first(h: Harness) -> None:
    second = make_harness(h.factory, h.clock)
    set_limit(h, "db", concurrency=1)
    submit_many(second, 2, limits=["db"])
    w = second.worker()
    assert len(second.lease(w, 5)) == 1


def test_the_timers_sweep_the_starts_a_rate_no_longer_counts(h: Harness) -> None:
    set_limit(h, "api", rate=2, per_s=10)
    submit_many(h, 2, limits=["api"])
    w = h.worker(concurrency=5)
    for a in h.lease(w, 5):
        h.succeed(w, a)
    with h.engine.store.transaction() as tx:
        assert tx.sweep_limit_holds(h.clock.now(), 100) == 0, "they count for 10 s"
    h.clock.advance(10)
    with h.engine.store.transaction() as tx:
        assert tx.sweep_limit_holds(h.clock.now(), 100) == 2
        assert tx.sweep_limit_holds(h.clock.now(), 100) == 0


def test_setting_a_limit_lines_up_the_tasks_queued_before_it(h: Harness) -> None:
    early = submit_many(h, 3000, limits=["late", "other:{kwargs.x}"], kwargs={"x": 1}, priority=5)
    plain = h.submit(name="plain")
    w = h.worker(concurrency=10)
    recorder = h.record_events()
    set_limit(h, "late", concurrency=1)
    assert recorder.ready_queues == {"default"}
    assert {h.get(t.id).held_on for t in early[:5]} == {"late"}
    first = h.leased_ids(w, 10)
    assert plain.id in first and len(first) == 2, "one of `late`, and the task behind them"
    assert h.lease(w, 10) == []


class _BehindOnce:
    """A clock whose next read is `behind`, then the harness's own: a lease that read its clock
    before a report freed the slot it then finds free (PostgreSQL, where nothing orders them)."""

    def __init__(self, h: Harness, behind: datetime) -> None:
        self._h, self._behind = h, behind

    def now(self) -> datetime:
        behind, self._behind = self._behind, None
        return behind if behind is not None else self._h.clock.now()


def test_an_attempt_that_takes_a_freed_slot_starts_no_earlier_than_the_end_that_freed_it(
    h: Harness,
) -> None:
    set_limit(h, "db", concurrency=1)
    h.submit(limits=["db"])
    w = h.worker(concurrency=2)
    (assignment,) = h.lease(w, 2)
    h.clock.advance(0.5)
    h.submit(limits=["db"])  # held in the key's line, and the key woken: due from now on
    h.clock.advance(0.5)
    h.succeed(w, assignment)
    ended = h.engine.attempts(assignment.task_id)[0].finished_at
    assert ended is not None
    h.engine.clock = _BehindOnce(h, ended - timedelta(milliseconds=1))
    try:
        (taken,) = h.lease(w, 2)
    finally:
        h.engine.clock = h.clock
    started = h.engine.attempts(taken.task_id)[0].started_at
    assert started >= ended, "two attempts of a key of one slot would overlap in the records"


def test_a_rate_counts_each_start_at_the_time_its_attempt_records(h: Harness) -> None:
    # A lease that takes a limit reads its clock again once it has the slots, and its attempt
    # starts then: the rate must count the start at that time, not at the lease's first read,
    # or the records show more starts in a window than the rate allows.
    set_limit(h, "api", rate=1, per_s=1.0)
    h.submit(limits=["api"])
    w = h.worker(concurrency=2)
    h.clock.advance(1.0)
    h.engine.clock = _BehindOnce(h, h.clock.now() - timedelta(seconds=0.3))
    try:
        (first,) = h.lease(w, 2)
    finally:
        h.engine.clock = h.clock
    started = h.engine.attempts(first.task_id)[0].started_at
    assert started == h.clock.now()
    h.succeed(w, first)
    h.submit(limits=["api"])
    h.clock.advance(0.8)
    assert h.lease(w, 2) == [], "a second start 0.8 s after the first, on a rate of 1 a second"
    h.clock.advance(0.2)
    (second,) = h.lease(w, 2)
    assert h.engine.attempts(second.task_id)[0].started_at - started >= timedelta(seconds=1)
