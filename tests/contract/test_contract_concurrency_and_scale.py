"""Several engines on one database at once (as several servers), and batches past driver limits."""

from __future__ import annotations

import threading
from collections import Counter

from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Report

THREADS = 4


def _run_threads(targets):
    errors: list[BaseException] = []

    def guard(target):
        try:
            target()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []


def test_workers_leasing_concurrently_through_two_engines_get_each_task_once(h):
    servers = [h, h.reopen()]
    tasks = h.engine.submit_batch([h.spec(priority=i % 5) for i in range(200)])
    leased: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(server, name):
        w = server.worker(name)
        while batch := server.lease(w, 7):
            server.engine.report(
                w.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED, result=name) for a in batch]
            )
            with lock:
                leased.extend((a.task_id, a.token) for a in batch)

    _run_threads([(lambda s=servers[i % 2], n=f"w{i}": work(s, n)) for i in range(THREADS)])

    assert Counter(task_id for task_id, _ in leased) == Counter({t.id: 1 for t in tasks})
    assert {token for _, token in leased} == {1}
    assert {(c.state, c.count) for c in h.engine.counts()} == {(TaskState.SUCCEEDED, 200)}


def test_timers_running_at_once_on_two_engines_requeue_each_task_once(h):
    servers = [h, h.reopen()]
    tasks = h.engine.submit_batch([h.spec() for _ in range(60)])
    w = h.worker()
    assert len(h.lease(w, 100)) == 60
    h.clock.advance(h.engine.settings.lease_s + h.engine.settings.worker_dead_after_s)

    _run_threads([(lambda s=servers[i % 2]: s.engine.tick()) for i in range(THREADS)])

    for task in tasks:
        got = h.get(task.id)
        assert got.state is TaskState.QUEUED
        assert got.retries_used == 0
        assert got.deliveries == 1
        assert [a.outcome for a in h.engine.attempts(task.id)] == [Outcome.LOST]


def test_submitting_concurrently_through_two_engines_keeps_submission_order_per_engine(h):
    servers = [h, h.reopen()]
    submitted: dict[int, list[str]] = {0: [], 1: []}

    def submit(index):
        for n in range(25):
            submitted[index].append(servers[index].submit(name=f"s{index}-{n}").id)

    _run_threads([(lambda i=i: submit(i)) for i in range(2)])

    w = h.worker()
    order = [a.task_id for a in h.lease(w, 100)]
    assert len(order) == 50
    for ids in submitted.values():
        positions = [order.index(task_id) for task_id in ids]
        assert positions == sorted(positions)


def test_concurrent_submits_with_one_idempotency_key_store_one_task(h):
    servers = [h, h.reopen()]
    ids: list[str] = []
    lock = threading.Lock()

    def submit(server):
        task = server.submit(key="only-once")
        with lock:
            ids.append(task.id)

    _run_threads([(lambda s=servers[i % 2]: submit(s)) for i in range(THREADS)])

    assert len(set(ids)) == 1
    assert sum(c.count for c in h.engine.counts()) == 1


# ---- past the drivers' parameter limits ---------------------------------------------------


def test_a_fan_in_over_a_thousand_parents(h):
    parents = 1200
    specs = [{"name": f"p{i}"} for i in range(parents)]
    specs.append({"name": "join", "depends_on": [f"p{i}" for i in range(parents)]})
    *parent_tasks, join = h.submit_batch(*specs)

    assert join.deps_left == parents
    assert h.get(join.id).deps_left == parents
    w = h.worker()
    done = 0
    while batch := h.lease(w, 500):
        assert join.id not in [a.task_id for a in batch]
        h.engine.report(w.id, [Report(a.task_id, a.token, Outcome.SUCCEEDED) for a in batch])
        done += len(batch)
        if done < parents:
            assert h.state(join.id) is TaskState.PENDING
        if done == parents:
            break

    assert h.state(join.id) is TaskState.QUEUED
    assert len(h.engine.get_many([t.id for t in parent_tasks])) == parents
    assert h.leased_ids(w) == [join.id]


def test_a_fan_out_failure_reaches_over_a_thousand_children(h):
    children = 1100
    root, *kids = h.submit_batch(
        {"name": "root"}, *[{"name": f"c{i}", "depends_on": ["root"]} for i in range(children)]
    )
    w = h.worker()

    h.fail(w, h.lease_one(w))

    states = h.engine.get_many([k.id for k in kids])
    assert Counter(t.state for t in states.values()) == Counter({TaskState.FAILED: children})
    assert h.state(root.id) is TaskState.FAILED

    h.engine.retry(root.id)
    states = h.engine.get_many([k.id for k in kids])
    assert Counter(t.state for t in states.values()) == Counter({TaskState.PENDING: children})
