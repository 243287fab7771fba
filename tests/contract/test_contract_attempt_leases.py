"""An attempt's row keeps its lease expiry as heartbeats extended it, so the attempt log alone shows
when the next attempt was allowed to start (the ledger checker relies on it)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Engine, Report


def _lease_s(h):
    return timedelta(seconds=h.engine.settings.lease_s)


def test_a_heartbeat_extends_the_lease_on_the_attempt_row_too(h):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)
    [before] = h.engine.attempts(task.id)
    assert before.lease_expires_at == a.lease_expires_at

    h.clock.advance(h.engine.settings.lease_s - 1)
    h.engine.heartbeat(w.id, [(a.task_id, a.token)])

    [after] = h.engine.attempts(task.id)
    assert after.lease_expires_at == h.clock.now() + _lease_s(h)
    assert after.lease_expires_at == h.get(task.id).lease_expires_at


def test_an_expired_attempt_ends_no_earlier_than_its_extended_lease(h):
    task = h.submit()
    w = h.worker()
    a = h.lease_one(w)
    h.clock.advance(h.engine.settings.lease_s - 1)
    h.engine.heartbeat(w.id, [(a.task_id, a.token)])
    extended_to = h.clock.now() + _lease_s(h)

    h.clock.advance(h.engine.settings.lease_s - 0.5)  # past the first expiry only
    assert h.engine.expire_leases() == 0
    h.clock.advance(1)
    assert h.engine.expire_leases() == 1

    [first] = h.engine.attempts(task.id)
    assert first.lease_expires_at == extended_to
    assert first.finished_at is not None and first.finished_at >= extended_to
    second = h.lease_one(w)
    assert h.engine.attempts(task.id)[1].started_at >= extended_to
    assert h.succeed(w, second) is TaskState.SUCCEEDED


def test_a_heartbeat_with_a_stale_token_leaves_both_attempt_rows_alone_but_the_current(h):
    task = h.submit()
    w, other = h.worker("w"), h.worker("other")
    old = h.lease_one(w)
    h.clock.advance(h.engine.settings.lease_s + 0.001)
    h.engine.expire_leases()
    new = h.lease_one(other)
    first_before, second_before = h.engine.attempts(task.id)

    h.clock.advance(1)
    h.engine.heartbeat(w.id, [(task.id, old.token)])  # the zombie: told to stop, extends nothing
    assert h.engine.attempts(task.id) == [first_before, second_before]

    h.engine.heartbeat(other.id, [(task.id, new.token)])
    first, second = h.engine.attempts(task.id)
    assert first == first_before
    assert second.lease_expires_at == h.clock.now() + _lease_s(h)


class _LockWait:
    """A store whose transactions begin `wait_s` after they are asked for, as when another
    transaction holds the lock."""

    def __init__(self, store, clock, wait_s):
        self._store, self._clock, self._wait_s = store, clock, wait_s

    @contextmanager
    def transaction(self, *, write=True):
        self._clock.advance(self._wait_s)
        with self._store.transaction(write=write) as tx:
            yield tx

    def maintain(self):
        self._store.maintain()

    def close(self):
        self._store.close()


def test_times_are_read_once_the_store_lock_is_held(h):
    """A lease granted after a wait for the lock lasts lease_s from its grant, and an attempt log
    never shows an attempt starting before the previous one ended."""
    engine = Engine(
        _LockWait(h.engine.store, h.clock, 1.5), clock=h.clock, settings=h.engine.settings
    )
    task = h.submit()
    w = h.worker()
    a = engine.lease(w.id, 1)[0]
    assert a.lease_expires_at == h.clock.now() + _lease_s(h)
    engine.heartbeat(w.id, [(task.id, a.token)])
    assert h.get(task.id).lease_expires_at == h.clock.now() + _lease_s(h)

    h.clock.advance(h.engine.settings.lease_s)
    assert engine.expire_leases() == 1
    expired_at = h.clock.now()
    engine.lease(w.id, 1)
    first, second = h.engine.attempts(task.id)
    assert first.finished_at == expired_at
    assert second.started_at == h.clock.now() > first.finished_at
    engine.report(w.id, [Report(task.id, 2, Outcome.SUCCEEDED)])
    assert h.engine.attempts(task.id)[1].finished_at == h.clock.now()
