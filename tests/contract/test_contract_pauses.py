"""Pausing queues, schedules and the cluster, on every store: what a pause holds back, when it
ends, and that it is the database's, not a server's (it survives restarts and holds for a
second engine on the same database)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core.pauses import PauseScope
from conveyor.core.schedules import Misfire, ScheduleSpec
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.errors import InvalidSpecError, NotFoundError
from conveyor.store.base import TaskFilter
from tests.contract.conftest import Harness, make_harness

WAIT_S = 10.0


def test_nothing_is_leased_from_a_paused_queue_and_other_queues_are_unaffected(
    h: Harness,
) -> None:
    held = h.submit(queue="q", name="held")
    free = h.submit(queue="other", name="free")
    w = h.worker(queues=("q", "other"))
    h.engine.pause_queue("q")
    assert h.leased_ids(w) == [free.id]
    assert h.leased_ids(w) == []
    assert h.state(held.id) is TaskState.QUEUED
    assert h.engine.resume_queue("q") is not None
    assert h.leased_ids(w) == [held.id]


def test_a_paused_queue_lets_its_running_tasks_finish(h: Harness) -> None:
    h.submit(queue="q")
    w = h.worker(queues=("q",))
    running = h.lease_one(w)
    h.engine.pause_queue("q")
    assert h.engine.heartbeat(w.id, [(running.task_id, running.token)]).stop == []
    assert h.succeed(w, running) is TaskState.SUCCEEDED


def test_a_pause_until_a_time_ends_at_that_time(h: Harness) -> None:
    task = h.submit(queue="q")
    w = h.worker(queues=("q",))
    until = h.clock.now() + timedelta(seconds=30)
    pause = h.engine.pause_queue("q", until=until)
    assert pause.until == until
    h.clock.advance(29.999)
    assert h.leased_ids(w) == []
    assert [p.name for p in h.engine.pauses()] == ["q"]
    h.clock.set(until)
    assert h.engine.pauses() == [], "a pause until T no longer holds at T"
    assert h.leased_ids(w) == [task.id]


def test_the_timers_remove_a_pause_whose_time_has_come_and_wake_its_queue(h: Harness) -> None:
    h.submit(queue="q")
    h.submit(queue="q")
    h.engine.pause_queue("q", until=h.clock.now() + timedelta(seconds=5))
    recorder = h.record_events()
    assert h.engine.end_pauses() == 0
    h.clock.advance(5)
    assert h.engine.end_pauses() == 1
    assert h.engine.end_pauses() == 0
    assert recorder.ready == {"q": 2}, "as many long-polls woken as tasks wait"
    with h.engine.store.transaction(write=False) as tx:
        assert tx.list_pauses() == []


def test_resuming_wakes_the_queue_and_resuming_an_unpaused_queue_changes_nothing(
    h: Harness,
) -> None:
    h.submit(queue="q")
    h.engine.pause_queue("q")
    recorder = h.record_events()
    ended = h.engine.resume_queue("q")
    assert ended is not None and ended.scope is PauseScope.QUEUE and ended.name == "q"
    assert recorder.ready == {"q": 1}
    recorder.clear()
    assert h.engine.resume_queue("q") is None
    assert recorder.ready == {}


def test_pausing_a_paused_queue_sets_its_new_end(h: Harness) -> None:
    h.engine.pause_queue("q", until=h.clock.now() + timedelta(seconds=5))
    h.engine.pause_queue("q")
    h.clock.advance(60)
    h.engine.end_pauses()
    assert [(p.name, p.until) for p in h.engine.pauses()] == [("q", None)]


def test_pausing_everything_holds_every_queue_and_keeps_queue_pauses_on_resume(
    h: Harness,
) -> None:
    a = h.submit(queue="a")
    b = h.submit(queue="b")
    w = h.worker(queues=("a", "b"))
    h.engine.pause_queue("b")
    h.engine.pause_all()
    assert h.leased_ids(w) == []
    assert [(p.scope, p.name) for p in h.engine.pauses()] == [
        (PauseScope.ALL, ""),
        (PauseScope.QUEUE, "b"),
    ]
    h.engine.resume_all()
    assert h.leased_ids(w) == [a.id], "queue b stays paused on its own"
    h.engine.resume_queue("b")
    assert h.leased_ids(w) == [b.id]


def test_submitting_goes_on_while_paused(h: Harness) -> None:
    h.engine.pause_all()
    task = h.submit(queue="q")
    assert h.state(task.id) is TaskState.QUEUED


def test_a_pause_survives_a_restart_of_the_store(h: Harness) -> None:
    task = h.submit(queue="q")
    h.engine.pause_queue("q", until=h.clock.now() + timedelta(hours=1))
    h.engine.store.close()
    again = h.reopen()
    w = again.worker(queues=("q",))
    assert again.leased_ids(w) == []
    assert [p.name for p in again.engine.pauses()] == ["q"]
    again.engine.resume_queue("q")
    assert again.leased_ids(w) == [task.id]


def test_a_pause_holds_for_a_second_engine_on_the_same_database(h: Harness) -> None:
    other = make_harness(h.factory, h.clock)
    task = h.submit(queue="q")
    w = other.worker(queues=("q",))
    h.engine.pause_queue("q")
    assert other.leased_ids(w) == []
    other.engine.pause_all()
    h.engine.resume_queue("q")
    assert other.leased_ids(w) == [], "the cluster is paused, from the other engine"
    h.engine.resume_all()
    assert other.leased_ids(w) == [task.id]


def test_a_pause_waits_for_a_lease_in_progress_and_holds_for_every_lease_after_it(
    h: Harness,
) -> None:
    """A lease and a pause never cross: the pause is stored once the lease has committed."""
    h.submit(queue="q")
    paused = threading.Event()

    def pause() -> None:
        h.engine.pause_queue("q")
        paused.set()

    with h.engine.store.transaction() as tx:
        assert tx.pauses_for_lease() == []
        pausing = threading.Thread(target=pause)
        pausing.start()
        assert not paused.wait(0.3), "the pause did not wait for the lease's transaction"
    assert paused.wait(WAIT_S)
    pausing.join(WAIT_S)
    assert h.leased_ids(h.worker(queues=("q",))) == []


def test_a_pause_until_a_past_time_is_refused(h: Harness) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        h.engine.pause_queue("q", until=h.clock.now())
    assert caught.value.field == "until"
    with pytest.raises(InvalidSpecError):
        h.engine.pause_queue("q", until=datetime(2030, 1, 1))  # no timezone
    with pytest.raises(InvalidSpecError) as bad_name:
        h.engine.pause_queue("no spaces")
    assert bad_name.value.field == "queue"
    assert h.engine.pauses() == []


# ---- schedules ------------------------------------------------------------------------------

START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


def _every_minute(h: Harness, misfire: Misfire = Misfire.ONCE, name: str = "tick") -> None:
    h.clock.set(START)
    h.engine.add_schedule(
        ScheduleSpec(
            name=name,
            cron="* * * * *",
            task=TaskSpec(handler="echo"),
            misfire=misfire,
            grace_s=10,
        )
    )


def _fired(h: Harness, name: str = "tick") -> int:
    return len(h.engine.list_tasks(TaskFilter(name=name), limit=1000))


def test_a_paused_schedule_does_not_fire_and_others_do(h: Harness) -> None:
    _every_minute(h)
    _every_minute(h, name="other")
    h.engine.pause_schedule("tick")
    h.clock.advance(30)  # 00:01:00
    assert h.engine.fire_schedules() == 1
    assert (_fired(h), _fired(h, "other")) == (0, 1)
    assert h.engine.schedule("tick").next_run_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("misfire", "expected"), [(Misfire.ONCE, 1), (Misfire.SKIP, 0), (Misfire.ALL, 10)]
)
def test_a_resumed_schedule_runs_its_missed_firings_by_its_misfire_policy(
    h: Harness, misfire: Misfire, expected: int
) -> None:
    _every_minute(h, misfire)
    h.engine.pause_schedule("tick")
    h.clock.advance(10 * 60 + 15)  # 00:10:45: firings 00:01 .. 00:10 missed while paused
    assert h.engine.fire_schedules() == 0
    h.engine.resume_schedule("tick")
    assert h.engine.fire_schedules() == expected
    assert h.engine.schedule("tick").next_run_at == datetime(2026, 1, 1, 0, 11, tzinfo=UTC)


def test_a_schedule_paused_until_a_time_fires_again_from_then(h: Harness) -> None:
    _every_minute(h)
    h.engine.pause_schedule("tick", until=START + timedelta(seconds=90))  # 00:02:00
    h.clock.advance(30)  # 00:01:00
    assert h.engine.fire_schedules() == 0
    h.clock.advance(60)  # 00:02:00: the pause is over; the 00:01 firing is in its grace
    assert h.engine.fire_schedules() == 1
    assert _fired(h) == 1


def test_a_paused_schedule_must_exist_and_removing_it_ends_its_pause(h: Harness) -> None:
    with pytest.raises(NotFoundError):
        h.engine.pause_schedule("nope")
    _every_minute(h)
    h.engine.pause_schedule("tick")
    h.engine.remove_schedule("tick")
    assert h.engine.pauses() == []


def test_pausing_every_queue_does_not_stop_schedules(h: Harness) -> None:
    _every_minute(h)
    h.engine.pause_all()
    h.clock.advance(30)
    assert h.engine.fire_schedules() == 1
