"""The worker's automatic prefetch: about 20 ms of work beyond the slots, by the tasks' length."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from conveyor.api.schemas import AssignmentOut
from conveyor.worker.bookkeeping import AUTO_PREFETCH_MAX, PREFETCH_HOLD_S, Bookkeeping
from conveyor.worker.waiting import WaitingRoom


def _books(slots: int) -> Bookkeeping:
    return Bookkeeping(slots, {}, slots=slots, auto_prefetch=True)


def _run(books: Bookkeeping, seconds: float, times: int) -> None:
    for i in range(times):
        books.finished(f"t{i}", 1, None, ran_s=seconds)


def test_one_beyond_the_slots_until_a_task_has_ended() -> None:
    assert _books(2).capacity == 3


def test_short_tasks_get_many_long_tasks_one() -> None:
    short, sleepy, long = _books(1), _books(16), _books(1)
    _run(short, 0.0005, 30)
    _run(sleepy, 0.01, 30)
    _run(long, 60.0, 30)
    assert short.capacity == 1 + AUTO_PREFETCH_MAX
    assert sleepy.capacity == 16 + 32  # 16 slots x 20 ms / 10 ms
    assert long.capacity == 2
    # Once prefetched tasks wait, the next lease waits until half the prefetch fits.
    assert short.refill == (AUTO_PREFETCH_MAX + 1) // 2


def test_a_fixed_prefetch_stays_fixed() -> None:
    books = Bookkeeping(3, {}, slots=1)
    _run(books, 0.0005, 30)
    assert (books.capacity, books.refill) == (3, 1)


def test_a_stranded_prefetch_stops_prefetching_until_a_task_ends_quickly_again() -> None:
    auto, fixed = _books(2), Bookkeeping(5, {}, slots=2)
    for books in (auto, fixed):
        books.prefetch_stranded()
        assert books.capacity == 2, "only what the slots start at once"
        books.finished("long", 1, None, ran_s=PREFETCH_HOLD_S * 10)
        assert books.capacity == 2, "a long task ending says nothing of the next ones"
        books.finished("short", 1, None, ran_s=PREFETCH_HOLD_S / 10)
        assert books.capacity > 2
    assert fixed.capacity == 5


def _assignment(task_id: str) -> AssignmentOut:
    return AssignmentOut(
        task_id=task_id, token=1, handler="echo", args=[], kwargs={}, timeout_s=None,
        lease_expires_at=datetime(2030, 1, 1, tzinfo=UTC), name=None, queue="default",
        resources={},
    )  # fmt: skip


def test_the_waiting_room_gives_out_the_tasks_that_waited_too_long() -> None:
    room = WaitingRoom()
    assert room.next_strand_s(0.0) is None
    room.arrive(_assignment("a"), 10.0)
    room.arrive(_assignment("b"), 10.5)
    assert room.next_strand_s(10.2) == pytest.approx(PREFETCH_HOLD_S - 0.2)
    assert room.stranded(10.0 + PREFETCH_HOLD_S - 0.01) == []
    assert [a.task_id for a in room.stranded(10.0 + PREFETCH_HOLD_S)] == ["a"]
    assert len(room) == 1
    first = room.next()
    room.put_back([first], 20.0)
    assert room.next_strand_s(20.0) == pytest.approx(PREFETCH_HOLD_S)
    assert room.next() is first


def test_a_room_that_never_hands_back_never_wakes_for_it() -> None:
    room = WaitingRoom(math.inf)
    room.arrive(_assignment("a"), 0.0)
    assert room.next_strand_s(1e9) is None
    assert room.stranded(1e9) == []
