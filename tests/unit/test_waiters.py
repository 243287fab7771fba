"""Waiters.result with a task a write just returned: the first read is skipped only while no task
has ended since before that write, so that an end it did not watch for is never missed."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from conveyor.core.models import Task
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.engine import Changes, Engine
from conveyor.server.waiters import Waiters
from conveyor.store.sqlite import SQLiteStore


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SQLiteStore(tmp_path / "waiters.db"))


def _ended(task: Task) -> Task:
    return dataclasses.replace(task, state=TaskState.SUCCEEDED, result=42)


def _publish_end(engine: Engine, task: Task) -> None:
    """As the engine does once a report that ends `task` has committed."""
    changes = Changes()
    changes.end([_ended(task)])
    engine.events.publish(changes)


def test_a_known_task_is_not_read_again_and_its_end_wakes_the_wait(engine: Engine) -> None:
    waiters = Waiters(engine.events)
    reads: list[str] = []

    async def main() -> Task:
        waiters.start()
        heard = waiters.ends_heard
        task = engine.submit(TaskSpec(handler="noop"))

        async def read() -> Task:
            reads.append(task.id)
            return engine.get(task.id)

        waiting = asyncio.ensure_future(
            waiters.result(task.id, read, wait_s=5, known=(task, heard))
        )
        await asyncio.sleep(0)  # the wait registers its watch
        _publish_end(engine, task)
        return await waiting

    got = asyncio.run(main())
    assert reads == []
    assert got.state is TaskState.SUCCEEDED and got.result == 42


def test_an_end_heard_since_the_write_makes_the_wait_read_first(engine: Engine) -> None:
    """Any task ending between the write and the watch could be this one: read it."""
    waiters = Waiters(engine.events)
    reads: list[str] = []

    async def main() -> Task:
        waiters.start()
        heard = waiters.ends_heard
        task = engine.submit(TaskSpec(handler="noop"))
        other = engine.submit(TaskSpec(handler="noop"))
        _publish_end(engine, other)  # heard before the wait below registers
        assert waiters.ends_heard != heard

        async def read() -> Task:
            reads.append(task.id)
            return _ended(engine.get(task.id))  # as if it had ended before the watch

        # No time to wait: what comes back is the read, or the stale task if it was skipped.
        return await waiters.result(task.id, read, wait_s=0, known=(task, heard))

    got = asyncio.run(main())
    assert len(reads) == 1
    assert got.state is TaskState.SUCCEEDED


def test_only_changes_with_ended_tasks_move_the_count(engine: Engine) -> None:
    waiters = Waiters(engine.events)

    async def main() -> list[int]:
        waiters.start()
        counts = [waiters.ends_heard]
        waiters.wake({"default"}, set())  # a queue got ready tasks: nothing ended
        counts.append(waiters.ends_heard)
        waiters.wake(set(), {"t1"})
        counts.append(waiters.ends_heard)
        waiters.wake(set(), None)  # another server: some tasks ended, ids not sent
        counts.append(waiters.ends_heard)
        waiters.stop()
        return counts

    first, after_ready, after_end, after_unknown = asyncio.run(main())
    assert after_ready == first
    assert first < after_end < after_unknown


# ---- held heartbeats ----------------------------------------------------------------------------


def _held_heartbeat(
    engine: Engine, publish: Changes, *, wait_s: float = 5.0
) -> tuple[list[str], float]:
    """Hold a heartbeat of worker "w1" while `publish` is published; returns its beats'
    answers and how long it was held."""
    waiters = Waiters(engine.events)
    beats: list[str] = []

    async def beat() -> str:
        beats.append("told" if beats else "nothing")
        return beats[-1]

    async def main() -> float:
        waiters.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        held = asyncio.ensure_future(
            waiters.orders("w1", beat, lambda answer: answer == "told", wait_s=wait_s)
        )
        await asyncio.sleep(0.05)  # held, after its first beat
        engine.events.publish(publish)
        await held
        return loop.time() - began

    return beats, asyncio.run(main())


def test_an_order_for_the_worker_answers_its_held_heartbeat_at_once(engine: Engine) -> None:
    beats, held_s = _held_heartbeat(engine, Changes(ordered={"w1"}))
    assert beats == ["nothing", "told"]  # beaten again, so the answer says what changed
    assert held_s < 1.0


def test_another_workers_order_leaves_the_heartbeat_held(engine: Engine) -> None:
    beats, held_s = _held_heartbeat(engine, Changes(ordered={"w2"}), wait_s=0.5)
    assert beats == ["nothing"]
    assert held_s >= 0.5
