"""Draining and stopping workers from the server, on every store: the heartbeat's answer says
so, and leases give a draining worker nothing."""

from __future__ import annotations

import pytest

from conveyor.core.models import WorkerState
from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Report
from conveyor.errors import ConflictError, InvalidSpecError, NotFoundError
from tests.contract.conftest import Harness


def test_a_drained_worker_hears_it_in_its_heartbeat_and_leases_nothing(h: Harness) -> None:
    h.submit()
    h.submit()
    w = h.worker()
    running = h.lease_one(w)
    assert h.engine.heartbeat(w.id).drain is False
    told = h.engine.drain_workers(ids=[w.id])
    assert [(x.id, x.state, x.hand_back) for x in told] == [(w.id, WorkerState.DRAINING, False)]
    reply = h.engine.heartbeat(w.id, [(running.task_id, running.token)])
    assert (reply.drain, reply.hand_back, reply.extended, reply.stop) == (
        True,
        False,
        [running.task_id],
        [],
    ), "its running task goes on, its lease extended"
    assert h.lease(w) == []
    assert h.succeed(w, running) is TaskState.SUCCEEDED, "and it may finish it"


def test_a_stopped_worker_is_told_to_hand_back_and_its_tasks_run_elsewhere(h: Harness) -> None:
    task = h.submit()
    w = h.worker("w1")
    running = h.lease_one(w)
    h.engine.drain_workers(ids=[w.id], hand_back=True)
    reply = h.engine.heartbeat(w.id, [(running.task_id, running.token)])
    assert (reply.drain, reply.hand_back) == (True, True)
    h.engine.report(w.id, [Report(running.task_id, running.token, Outcome.HANDED_BACK)])
    assert h.get(task.id).retries_used == 0
    other = h.worker("w2")
    assert h.leased_ids(other) == [task.id]


def test_drain_by_queue_and_by_host_picks_live_workers_only(h: Harness) -> None:
    eng = h.engine
    eng.register_worker(name="a", host="h1", pid=1, concurrency=1, queues=["q", "x"])
    eng.register_worker(name="b", host="h2", pid=2, concurrency=1, queues=["q"])
    eng.register_worker(name="c", host="h1", pid=3, concurrency=1, queues=["x"])
    gone = eng.register_worker(name="d", host="h1", pid=4, concurrency=1, queues=["q"])
    eng.deregister_worker(gone.id)
    assert sorted(w.name for w in eng.drain_workers(queue="q", host="h1")) == ["a"]
    assert sorted(w.name for w in eng.drain_workers(queue="q")) == ["a", "b"]
    assert sorted(w.name for w in eng.drain_workers(host="h1", hand_back=True)) == ["a", "c"]
    assert eng.drain_workers(queue="nobody-serves-this") == []
    states = {w.name: (w.state, w.hand_back) for w in eng.workers()}
    assert states == {
        "a": (WorkerState.DRAINING, True),
        "b": (WorkerState.DRAINING, False),
        "c": (WorkerState.DRAINING, True),
        "d": (WorkerState.GONE, False),
    }


def test_a_stopping_worker_stays_stopping_when_told_to_drain(h: Harness) -> None:
    w = h.worker()
    h.engine.drain_workers(ids=[w.id], hand_back=True)
    (again,) = h.engine.drain_workers(ids=[w.id])
    assert again.hand_back is True
    assert h.engine.heartbeat(w.id).hand_back is True


def test_drain_names_workers_that_exist_and_live(h: Harness) -> None:
    with pytest.raises(InvalidSpecError):
        h.engine.drain_workers()
    with pytest.raises(NotFoundError):
        h.engine.drain_workers(ids=["no-such-worker"])
    w = h.worker()
    h.engine.deregister_worker(w.id)
    with pytest.raises(ConflictError):
        h.engine.drain_workers(ids=[w.id])


def test_a_drain_is_stored_with_the_worker(h: Harness) -> None:
    w = h.worker()
    h.engine.drain_workers(ids=[w.id], hand_back=True)
    h.engine.store.close()
    again = h.reopen()
    reply = again.engine.heartbeat(w.id)
    assert (reply.drain, reply.hand_back) == (True, True)
    assert again.engine.lease(w.id, 5) == []


def test_a_cancel_of_its_task_a_drain_and_its_removal_are_orders_for_a_worker(h: Harness) -> None:
    """Each tells the worker's held heartbeat to answer now (server.waiters): the changes they
    publish name the worker. A cancel of a task nobody runs names none."""
    heard: list[set[str]] = []
    h.engine.events.subscribe(lambda changes: heard.append(set(changes.ordered)))
    w1, w2 = h.worker("w1"), h.worker("w2")
    running = h.submit()
    h.lease_one(w1)
    queued = h.submit()

    h.engine.cancel(queued.id)
    h.engine.cancel(running.id)
    h.engine.drain_workers(ids=[w2.id])
    h.engine.deregister_worker(w1.id)

    assert [ordered for ordered in heard if ordered] == [{w1.id}, {w2.id}, {w1.id}]
    assert heard.count(set()) >= 1  # the cancel of the queued task: no worker to tell
