"""The worker's automatic prefetch: about 20 ms of work beyond the slots, by the tasks' length."""

from __future__ import annotations

from conveyor.worker.bookkeeping import AUTO_PREFETCH_MAX, Bookkeeping


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
