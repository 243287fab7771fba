"""Cron schedules through the engine, on every store: each firing submits exactly one task."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from conveyor.core.schedules import Misfire, ScheduleSpec
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.errors import ConflictError, NotFoundError
from conveyor.store.base import TaskFilter
from tests.contract.conftest import Harness, make_harness

START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


def every_minute(name: str = "tick", misfire: Misfire = Misfire.ONCE) -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        cron="* * * * *",
        task=TaskSpec(handler="echo", args=[1]),
        misfire=misfire,
        grace_s=10,
    )


def scheduled_tasks(h: Harness, name: str = "tick") -> list[str]:
    return [t.id for t in h.engine.list_tasks(TaskFilter(name=name), limit=1000)]


def test_a_schedule_fires_once_per_firing(h: Harness) -> None:
    h.clock.set(START)
    schedule = h.engine.add_schedule(every_minute())
    assert schedule.next_run_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert h.engine.fire_schedules() == 0
    h.clock.advance(30)  # 00:01:00
    assert h.engine.fire_schedules() == 1
    assert h.engine.fire_schedules() == 0, "the same firing never submits twice"
    h.clock.advance(60)
    assert h.engine.fire_schedules() == 1
    tasks = [h.get(i) for i in scheduled_tasks(h)]
    assert len(tasks) == 2 and all(t.state is TaskState.QUEUED for t in tasks)
    assert all(t.labels["schedule"] == "tick" for t in tasks)
    stored = h.engine.schedule("tick")
    assert stored.fired == 2 and stored.next_run_at == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("misfire", "expected"), [(Misfire.ONCE, 1), (Misfire.SKIP, 0), (Misfire.ALL, 10)]
)
def test_missed_firings_follow_the_policy(h: Harness, misfire: Misfire, expected: int) -> None:
    h.clock.set(START)
    h.engine.add_schedule(every_minute(misfire=misfire))
    h.clock.advance(10 * 60 + 15)  # down until 00:10:45: firings 00:01 .. 00:10 missed
    assert h.engine.fire_schedules() == expected
    assert h.engine.schedule("tick").next_run_at == datetime(2026, 1, 1, 0, 11, tzinfo=UTC)


def test_add_list_replace_remove(h: Harness) -> None:
    h.engine.add_schedule(every_minute("a"))
    h.engine.add_schedule(every_minute("b"))
    with pytest.raises(ConflictError):
        h.engine.add_schedule(every_minute("a"))
    replaced = h.engine.add_schedule(
        every_minute("a").model_copy(update={"cron": "0 * * * *"}), replace=True
    )
    assert replaced.spec.cron == "0 * * * *"
    assert [s.name for s in h.engine.schedules()] == ["a", "b"]
    h.engine.remove_schedule("a")
    with pytest.raises(NotFoundError):
        h.engine.schedule("a")
    with pytest.raises(NotFoundError):
        h.engine.remove_schedule("a")


def test_schedules_survive_a_restart(h: Harness) -> None:
    h.clock.set(START)
    h.engine.add_schedule(every_minute())
    again = h.reopen()
    assert again.engine.schedule("tick").spec == every_minute()


def test_two_engines_firing_at_the_same_moment_submit_each_firing_once(h: Harness) -> None:
    h.clock.set(START)
    for i in range(20):
        h.engine.add_schedule(every_minute(f"s{i}"))
    other = make_harness(h.factory, clock=h.clock)
    h.clock.advance(30)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def fire(engine_harness: Harness) -> None:
        barrier.wait()
        counts.append(engine_harness.engine.fire_schedules())

    threads = [threading.Thread(target=fire, args=(x,)) for x in (h, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 20
    assert sum(c.count for c in h.engine.counts()) == 20


def test_a_schedule_is_validated_as_its_task_would_be(h: Harness) -> None:
    """A dependency on a task that does not exist is refused when the schedule is stored, as
    `submit` refuses it, instead of failing at every firing."""
    from conveyor.errors import InvalidSpecError

    spec = every_minute().model_copy(
        update={"task": TaskSpec(handler="echo", depends_on=["no-such-task"])}
    )
    with pytest.raises(InvalidSpecError) as refused:
        h.engine.add_schedule(spec)
    assert refused.value.field == "task.depends_on"
    with pytest.raises(NotFoundError):
        h.engine.schedule("tick")


def test_a_schedule_that_cannot_fire_is_marked_and_the_others_fire(h: Harness) -> None:
    """A valid schedule whose dependency was later removed cannot submit its task: it is marked
    with the error, moves on in its timetable, and every other schedule goes on firing."""
    h.clock.set(START)
    upstream = h.submit(name="upstream")
    broken = every_minute("broken").model_copy(
        update={"task": TaskSpec(handler="echo", depends_on=[upstream.id])}
    )
    h.engine.add_schedule(broken)
    h.engine.add_schedule(every_minute("fine"))
    h.engine.delete(upstream.id)
    h.clock.advance(30)  # 00:01:00: both are due
    assert h.engine.fire_schedules() == 1
    assert len(scheduled_tasks(h, "fine")) == 1
    assert scheduled_tasks(h, "broken") == []
    marked = h.engine.schedule("broken")
    assert marked.last_error is not None and upstream.id in marked.last_error
    assert marked.last_error_at == h.clock.now()
    assert marked.next_run_at == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert h.engine.schedule("fine").last_error is None
    h.clock.advance(60)
    assert h.engine.fire_schedules() == 1, "the broken one does not stop the next pass either"
