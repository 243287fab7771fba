"""Waiters.lease wakes as many waiting long-polls as tasks got ready, and passes a wake on when
the long-poll it chose cannot use it, so that no ready task waits out another worker's poll."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from conveyor.engine.events import Events
from conveyor.server.waiters import Waiters

Ready = dict[str, int] | set[str] | None


class Polls:
    """Long-polls on queue "q" that each lease from a shared list of ready tasks."""

    def __init__(self, waiters: Waiters) -> None:
        self.waiters = waiters
        self.ready: list[str] = []
        self.looks: dict[str, int] = {}
        self.fits: dict[str, Callable[[str], bool]] = {}
        self.looked = asyncio.Event()

    def start(self, name: str, fits: Callable[[str], bool] = lambda _task: True) -> asyncio.Task:
        self.looks[name] = 0
        self.fits[name] = fits

        async def attempt() -> list[str]:
            self.looks[name] += 1
            self.looked.set()
            taken = [task for task in self.ready if self.fits[name](task)][:1]
            for task in taken:
                self.ready.remove(task)
            return taken

        return asyncio.ensure_future(self.waiters.lease(attempt, wait_s=30, queues=["q"]))

    async def make_ready(self, *tasks: str, ready: Ready | str = "counted") -> None:
        """As a commit does: the tasks are there, then the engine's change is delivered (by
        default, with the count of tasks made ready)."""
        self.ready.extend(tasks)
        self.waiters.wake({"q": len(tasks)} if ready == "counted" else ready, ())  # type: ignore[arg-type]
        await settle()


async def settle() -> None:
    """Run every callback and task step the loop has ready (all of this runs on one loop)."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(scenario: Callable[[Polls], Awaitable[None]]) -> None:
    async def main() -> None:
        waiters = Waiters(Events())
        waiters.start()
        try:
            await scenario(Polls(waiters))
        finally:
            waiters.stop()
            await settle()

    asyncio.run(main())


def test_one_ready_task_wakes_one_of_two_waiting_polls() -> None:
    async def scenario(polls: Polls) -> None:
        a, b = polls.start("a"), polls.start("b")
        await settle()
        assert polls.looks == {"a": 1, "b": 1}  # the first looks found nothing: both wait

        await polls.make_ready("t1")

        assert sorted(polls.looks.values()) == [1, 2]  # one looked again, the other sleeps
        done = a if a.done() else b
        assert done.result().tasks == ["t1"]
        assert not (a.done() and b.done())

    run(scenario)


def test_as_many_polls_wake_as_tasks_got_ready() -> None:
    async def scenario(polls: Polls) -> None:
        a, b, c = polls.start("a"), polls.start("b"), polls.start("c")
        await settle()

        await polls.make_ready("t1", "t2")

        assert sorted(polls.looks.values()) == [1, 2, 2]
        assert sorted(t.result().tasks[0] for t in (a, b, c) if t.done()) == ["t1", "t2"]

    run(scenario)


def test_the_poll_waiting_longest_is_woken_first() -> None:
    async def scenario(polls: Polls) -> None:
        first = polls.start("first")
        await settle()
        second = polls.start("second")
        await settle()

        await polls.make_ready("t1")

        assert first.result().tasks == ["t1"]
        assert not second.done() and polls.looks["second"] == 1

    run(scenario)


def test_a_poll_that_cannot_take_the_task_passes_the_wake_on() -> None:
    async def scenario(polls: Polls) -> None:
        cpu = polls.start("cpu", fits=lambda task: not task.startswith("gpu"))
        await settle()
        gpu = polls.start("gpu")
        await settle()

        # The CPU worker's poll, waiting longest, is chosen, finds nothing it can take and
        # wakes the others: the GPU task does not wait for the GPU worker's poll to time out.
        await polls.make_ready("gpu-task")

        assert polls.looks["cpu"] == 2
        assert gpu.done() and gpu.result().tasks == ["gpu-task"]
        assert not cpu.done()

    run(scenario)


def test_a_chosen_poll_that_goes_away_before_looking_passes_the_wake_on() -> None:
    async def scenario(polls: Polls) -> None:
        chosen = polls.start("chosen")
        await settle()
        other = polls.start("other")
        await settle()
        polls.ready.append("t1")
        polls.waiters.wake({"q": 1}, ())
        # The wake is on its way to the longest-waiting poll, whose request is cancelled (its
        # worker's connection closed) before it can look again.
        chosen.cancel()
        await settle()

        assert polls.looks["chosen"] == 1
        assert other.done() and other.result().tasks == ["t1"]

    run(scenario)


def test_queues_without_counts_wake_every_poll_once() -> None:
    """Another server's change says which queues, not how many tasks: every poll looks, and the
    ones that find nothing go back to sleep without waking each other again."""

    async def scenario(polls: Polls) -> None:
        a, b, c = polls.start("a"), polls.start("b"), polls.start("c")
        await settle()

        await polls.make_ready("t1", ready={"q"})

        assert sorted(polls.looks.values()) == [2, 2, 2]
        assert [t.done() for t in (a, b, c)].count(True) == 1

    run(scenario)


def test_a_change_that_names_no_queue_wakes_every_poll_once() -> None:
    """What another server committed while this one could not hear it (its listening
    connection was lost, or it had just started): every poll of every queue looks again."""

    async def scenario(polls: Polls) -> None:
        any_queue = asyncio.Event()

        async def attempt() -> list[str]:
            any_queue.set()
            return []

        a, b = polls.start("a"), polls.start("b")
        anywhere = asyncio.ensure_future(polls.waiters.lease(attempt, wait_s=30, queues=None))
        await settle()
        any_queue.clear()

        await polls.make_ready("t1", ready=None)

        assert sorted(polls.looks.values()) == [2, 2]
        assert any_queue.is_set(), "the poll on every queue looked again too"
        assert [t.done() for t in (a, b)].count(True) == 1
        anywhere.cancel()

    run(scenario)


@pytest.mark.parametrize("idle_first", [True, False])
def test_a_sleeping_poll_is_woken_before_one_that_is_looking(idle_first: bool) -> None:
    """A poll in the middle of a look is woken only when too few polls sleep: it may have looked
    before the commit, and then looks again."""

    async def scenario(polls: Polls) -> None:
        gate = asyncio.Event()
        busy_looks = 0

        async def slow_attempt() -> list[str]:
            nonlocal busy_looks
            busy_looks += 1
            await gate.wait()
            return []

        busy = asyncio.ensure_future(polls.waiters.lease(slow_attempt, wait_s=30, queues=["q"]))
        sleeper = polls.start("sleeper") if idle_first else None
        await settle()

        await polls.make_ready("t1")
        gate.set()
        await settle()

        if idle_first:
            assert sleeper is not None and sleeper.result().tasks == ["t1"]
            assert busy_looks == 1  # not woken: it went back to sleep after its look
        else:
            assert busy_looks == 2  # looked again after its look, as it may have missed t1
        busy.cancel()

    run(scenario)
