"""The worker's leaser with a following lease: it takes each task as its answer comes, stops the
call once the room it asked for has shrunk (the rest would only wait here), and leases a call at
a time from a server that refuses the field."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.api.schemas import AssignmentOut, LeaseOut
from conveyor.client.answers import Following
from conveyor.errors import InvalidSpecError
from conveyor.worker.bookkeeping import Bookkeeping
from conveyor.worker.leasing import Leaser


def _answer(task_id: str) -> LeaseOut:
    task = AssignmentOut(
        task_id=task_id, token=1, handler="echo", args=[], kwargs={}, timeout_s=None,
        lease_expires_at=datetime.now(UTC) + timedelta(seconds=30), name=None,
        queue="default", resources={},
    )  # fmt: skip
    return LeaseOut(tasks=[task], waited_s=0.0, lease_s=30.0)


class _Server:
    """Answers lease calls as the script says; records what the leaser asked and when it
    stopped a call. Once the script is done it stops the worker's leasing."""

    def __init__(self, books: Bookkeeping, calls: list[list[LeaseOut] | Exception]) -> None:
        self.books = books
        self.script = calls
        self.asked: list[dict[str, Any]] = []
        self.stopped_after: list[int] = []
        """For each stop(), how many answers of its call the leaser had taken."""
        self.stop_asked = threading.Event()

    def leases(self, worker_id: str, max_tasks: int, **options: Any) -> Following[LeaseOut]:
        self.asked.append({"max": max_tasks, **options})
        if not self.script:
            self.books.stop_leasing()
            return Following(iter([LeaseOut(tasks=[], waited_s=0.0, lease_s=30.0)]))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        taken = 0

        def answers() -> Iterator[LeaseOut]:
            nonlocal taken
            for answer in step:
                taken += 1
                yield answer

        def stop() -> None:
            self.stopped_after.append(taken)
            self.stop_asked.set()

        return Following(answers(), stop)


class _Registration:
    id = "w-1"

    def renew(self, worker_id: str) -> None:
        raise AssertionError("no renewal expected")


class _Pool:
    def wake(self) -> None:
        pass


def _leaser(books: Bookkeeping, server: _Server) -> tuple[Leaser, queue.SimpleQueue[Any]]:
    inbox: queue.SimpleQueue[AssignmentOut] = queue.SimpleQueue()
    leaser = Leaser(
        server,  # type: ignore[arg-type]
        _Registration(),  # type: ignore[arg-type]
        books,
        _Pool(),  # type: ignore[arg-type]
        inbox,
        stop_leases=lambda leases: None,
        queues=["default"],
        wait_s=20.0,
        burst=False,
        halt=threading.Event(),
        on_burst_done=lambda: None,
    )
    return leaser, inbox


def test_every_answer_of_a_following_call_is_taken_and_one_call_asks_for_the_whole_room() -> None:
    books = Bookkeeping(10, {}, slots=1)
    server = _Server(books, [[_answer("a"), _answer("b"), _answer("c")]])
    leaser, inbox = _leaser(books, server)
    leaser.run()  # until the server, its script done, stops the worker's leasing
    assert [inbox.get_nowait().task_id for _ in range(3)] == ["a", "b", "c"]
    assert server.asked[0]["max"] == 10 and server.asked[0]["follow"] is True
    assert server.stopped_after == []


def test_a_call_whose_room_shrank_is_stopped_at_the_next_answer() -> None:
    books = Bookkeeping(1, {}, slots=1, auto_prefetch=True)  # capacity: the slot and one more
    shrink = threading.Event()

    class Shrinking(_Server):
        def leases(self, worker_id: str, max_tasks: int, **options: Any) -> Following[LeaseOut]:
            following = super().leases(worker_id, max_tasks, **options)

            def answers() -> Iterator[LeaseOut]:
                for answer in following:
                    yield answer
                    if not shrink.is_set():
                        shrink.set()
                        books.prefetch_stranded()  # capacity now the one slot, which is taken

            return Following(answers(), following.stop)

    server = Shrinking(books, [[_answer("a"), _answer("b")]])
    leaser, inbox = _leaser(books, server)
    threading.Thread(target=leaser.run, daemon=True).start()
    assert inbox.get(timeout=5).task_id == "a"
    assert inbox.get(timeout=5).task_id == "b"  # what came meanwhile is still taken
    assert server.stop_asked.wait(5), "the call goes on although the room is gone"
    assert server.stopped_after == [2]


def test_a_server_that_refuses_following_is_asked_a_call_at_a_time() -> None:
    books = Bookkeeping(2, {}, slots=1)
    refused = InvalidSpecError("body.follow: Extra inputs are not permitted")
    server = _Server(books, [refused, [_answer("a")]])
    leaser, inbox = _leaser(books, server)
    leaser.run()
    assert inbox.get_nowait().task_id == "a"
    assert [call["follow"] for call in server.asked] == [True, False, False]
