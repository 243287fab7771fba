"""Retention and housekeeping: old finished tasks go, what live tasks still need stays."""

from __future__ import annotations

import dataclasses
import random

import pytest

from conveyor.core.states import TaskState
from conveyor.engine import Engine
from conveyor.errors import NotFoundError
from tests.contract.conftest import SEED, SETTINGS, Harness


def with_retention(h: Harness, retention_s: float) -> Harness:
    settings = dataclasses.replace(SETTINGS, retention_s=retention_s)
    engine = Engine(h.engine.store, clock=h.clock, settings=settings, rng=random.Random(SEED))
    return Harness(engine, h.clock, h.factory)


def test_finished_tasks_older_than_retention_are_deleted(h: Harness) -> None:
    r = with_retention(h, 60)
    w = r.worker()
    old = r.submit(name="old")
    r.run_next(w)
    r.clock.advance(30)
    recent = r.submit(name="recent")
    r.run_next(w)
    waiting = r.submit(name="waiting")
    r.clock.advance(31)  # old finished 61 s ago, recent 31 s ago

    assert r.engine.maintain() == 1
    with pytest.raises(NotFoundError):
        r.get(old.id)
    assert r.state(recent.id) is TaskState.SUCCEEDED
    assert r.state(waiting.id) is TaskState.QUEUED, "live tasks are never pruned"
    counts = {c.state: c.count for c in r.engine.counts()}
    assert counts == {TaskState.SUCCEEDED: 1, TaskState.QUEUED: 1}, "counts follow deletions"


def test_a_finished_task_a_live_task_still_needs_is_kept(h: Harness) -> None:
    r = with_retention(h, 10)
    w = r.worker()
    parent, other = r.submit_batch(
        {"handler": "noop", "name": "p"},
        {"handler": "noop", "name": "o", "run_at": r.clock.now().replace(year=2100)},
    )
    child = r.submit(name="c", depends_on=[parent.id, other.id], args=[{"$result": parent.id}])
    r.run_next(w, result=42)
    r.clock.advance(3600)
    r.engine.maintain()
    assert r.state(parent.id) is TaskState.SUCCEEDED, "its result is still to be consumed"
    assert r.state(child.id) is TaskState.PENDING


def test_without_retention_nothing_is_deleted(h: Harness) -> None:
    w = h.worker()
    task = h.submit()
    h.run_next(w)
    h.clock.advance(10 * 365 * 86400)
    assert h.engine.maintain() == 0
    assert h.state(task.id) is TaskState.SUCCEEDED


def test_maintain_twice_in_a_row_is_harmless_and_counts_stay_exact(h: Harness) -> None:
    w = h.worker()
    for _ in range(5):
        h.submit()
    h.run_next(w)
    h.engine.maintain()
    h.engine.maintain()
    h.run_next(w)
    counts = {c.state: c.count for c in h.engine.counts()}
    assert counts == {TaskState.SUCCEEDED: 2, TaskState.QUEUED: 3}
