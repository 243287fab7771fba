"""The fault matrix's limit check finds what it must: more attempts of one key running at once
than the limit allows, and an attempt that never ended; a slot freed and taken again at the same
instant, or attempts of different keys, are no finding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.ledger.report import AttemptRecord, TaskRecord
from tests.helpers.workload import over_the_limit, over_the_rate

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def task(key: str, *spans: tuple[float, float | None]) -> TaskRecord:
    attempts = [
        AttemptRecord(
            number=n,
            worker_id="w",
            started_at=T0 + timedelta(seconds=start),
            lease_expires_at=None,
            finished_at=None if end is None else T0 + timedelta(seconds=end),
            outcome=None if end is None else "succeeded",
        )
        for n, (start, end) in enumerate(spans, 1)
    ]
    return TaskRecord(id=f"id-{key}", state="succeeded", attempts=attempts, key=key)


def test_a_third_attempt_running_on_a_key_of_two_is_found() -> None:
    tasks = {k: task(k, span) for k, span in (("a", (0, 10)), ("b", (1, 5)), ("c", (4, 6)))}
    found = over_the_limit(tasks, {"a": "L:k0", "b": "L:k0", "c": "L:k0"}, 2)
    assert found == [
        "L:k0: 3 running at 2026-12-07T12:00:04+00:00: a#1 12:00:00-12:00:10 succeeded on w; "
        "b#1 12:00:01-12:00:05 succeeded on w; c#1 12:00:04-12:00:06 succeeded on w"
    ]


def test_a_slot_freed_and_taken_at_the_same_instant_and_other_keys_are_fine() -> None:
    tasks = {
        "a": task("a", (0, 4), (6, 8)),  # its retry takes a slot again later
        "b": task("b", (1, 5)),
        "c": task("c", (4, 6)),  # starts as `a` ends
        "d": task("d", (0, 10)),  # another key
        "e": task("e", (0, 10)),  # takes no limit
    }
    limited = {"a": "L:k0", "b": "L:k0", "c": "L:k0", "d": "L:k1"}
    assert over_the_limit(tasks, limited, 2) == []


def test_an_attempt_that_never_ended_is_found() -> None:
    tasks = {"a": task("a", (0, 1), (2, None))}
    assert over_the_limit(tasks, {"a": "L:k0"}, 2) == ["L:k0: attempt 2 of a never ended"]


def test_more_starts_in_a_window_than_the_rate_are_found() -> None:
    tasks = {k: task(k, (start, start + 0.1)) for k, start in (("a", 0), ("b", 0.5), ("c", 0.9))}
    found = over_the_rate(tasks, {"a": "L:k0", "b": "L:k0", "c": "L:k0"}, 2, 1.0)
    assert found == [
        "L:k0: 3 started within 1 s up to c#1: a#1 12:00:00, b#1 12:00:00.500000, c#1 12:00:00.900000"
    ]


def test_starts_a_full_window_apart_other_keys_and_retries_count_as_they_should() -> None:
    tasks = {
        "a": task("a", (0, 0.1), (1.0, 1.1)),  # its retry starts exactly one window later
        "b": task("b", (0.5, 0.6)),
        "c": task("c", (1.2, 1.3)),  # the window before it holds b and a's retry
        "d": task("d", (0.2, 0.3)),  # another key
    }
    limited = {"a": "L:k0", "b": "L:k0", "c": "L:k0", "d": "L:k1"}
    assert over_the_rate(tasks, limited, 2, 1.0) == [
        "L:k0: 3 started within 1 s up to c#1: b#1 12:00:00.500000, a#2 12:00:01, c#1 12:00:01.200000"
    ]
    assert over_the_rate(tasks, limited, 3, 1.0) == []
