"""Which ready task a worker gets: priority, submission order, queues, resources."""

from __future__ import annotations

import pytest

from conveyor.core.states import TaskState


def test_higher_priority_is_leased_first_and_ties_go_in_submission_order(h):
    submitted = [
        h.submit(name="low", priority=-5),
        h.submit(name="mid-1"),
        h.submit(name="high", priority=10),
        h.submit(name="mid-2"),
        h.submit(name="top", priority=100),
        h.submit(name="mid-3"),
    ]
    w = h.worker()
    names = {t.id: t.name for t in submitted}

    order = [names[h.lease_one(w).task_id] for _ in submitted]

    assert order == ["top", "high", "mid-1", "mid-2", "mid-3", "low"]


def test_one_lease_call_returns_tasks_in_lease_order(h):
    tasks = [h.submit(name=f"t{i}", priority=i % 3) for i in range(9)]
    w = h.worker()

    leased = h.leased_ids(w, 9)

    by_id = {t.id: t for t in tasks}
    keys = [(-by_id[i].priority, by_id[i].seq) for i in leased]
    assert keys == sorted(keys)
    assert sorted(leased) == sorted(by_id)


def test_submission_order_breaks_ties_within_one_batch(h):
    tasks = h.submit_batch(*[{"name": f"b{i}", "priority": 1} for i in range(5)])
    w = h.worker()

    assert h.leased_ids(w, 5) == [t.id for t in tasks]


def test_several_queues_merge_in_priority_then_submission_order(h):
    a1 = h.submit(queue="a", priority=1)
    b1 = h.submit(queue="b", priority=1)
    a2 = h.submit(queue="a", priority=5)
    b2 = h.submit(queue="b", priority=3)
    a3 = h.submit(queue="a", priority=0)
    w = h.worker(queues=["a", "b"])

    assert h.leased_ids(w, 10) == [a2.id, b2.id, a1.id, b1.id, a3.id]


def test_a_worker_only_leases_from_its_queues(h):
    mine = h.submit(queue="mine")
    theirs = h.submit(queue="theirs", priority=100)
    default = h.submit()
    w = h.worker(queues=["mine"])

    assert h.leased_ids(w, 10) == [mine.id]
    assert h.states(theirs, default) == [TaskState.QUEUED, TaskState.QUEUED]

    other = h.worker("w2", queues=["theirs"])
    assert h.leased_ids(other, 10) == [theirs.id]


def test_lease_respects_max_tasks(h):
    for _ in range(5):
        h.submit()
    w = h.worker()

    assert len(h.lease(w, 2)) == 2
    assert len(h.lease(w, 10)) == 3
    assert h.lease(w, 10) == []


def test_a_leased_task_is_not_leased_again(h):
    task = h.submit()
    w1, w2 = h.worker("w1"), h.worker("w2")

    assert h.leased_ids(w1) == [task.id]
    assert h.leased_ids(w2) == []
    got = h.get(task.id)
    assert got.state is TaskState.RUNNING
    assert got.worker_id == w1.id


# ---- resources ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("needs", "advertised", "free", "leased"),
    [
        pytest.param({"gpu": 1}, None, {}, False, id="free-empty"),
        pytest.param({"gpu": 1}, None, None, False, id="worker-has-no-gpu"),
        pytest.param({"gpu": 1}, {"cpu": 8}, None, False, id="worker-has-other-resources"),
        pytest.param({"gpu": 1}, {"gpu": 1}, None, True, id="worker-advertises-gpu"),
        pytest.param({"gpu": 1}, None, {"gpu": 1}, True, id="free-gpu-given"),
        pytest.param({"gpu": 2}, {"gpu": 1}, None, False, id="not-enough-gpu"),
        pytest.param({"gpu": 1}, {"gpu": 4}, {"gpu": 0}, False, id="free-overrides-advertised"),
        pytest.param({"memory_mb": 2048}, None, {"memory_mb": 4096}, True, id="memory-fits"),
        pytest.param({"memory_mb": 8192}, None, {"memory_mb": 4096}, False, id="memory-short"),
        pytest.param({"gpu": 0}, None, {}, True, id="zero-amount-needs-nothing"),
        pytest.param({}, None, {}, True, id="no-needs"),
    ],
)
def test_a_task_is_leased_only_to_a_worker_with_the_resources_free(
    h, needs, advertised, free, leased
):
    task = h.submit(resources=needs)
    w = h.worker(resources=advertised)

    got = h.leased_ids(w, 1, free=free)

    assert got == ([task.id] if leased else [])
    assert h.state(task.id) is (TaskState.RUNNING if leased else TaskState.QUEUED)


def test_two_tasks_needing_the_only_gpu_lease_one_per_call(h):
    first = h.submit(resources={"gpu": 1})
    second = h.submit(resources={"gpu": 1})
    w = h.worker(resources={"gpu": 1})

    assert h.leased_ids(w, 10, free={"gpu": 1}) == [first.id]
    assert h.state(second.id) is TaskState.QUEUED
    assert h.leased_ids(w, 10, free={"gpu": 1}) == [second.id]


def test_resources_of_one_call_are_shared_by_the_tasks_it_leases(h):
    big = h.submit(resources={"cpu": 3}, priority=2)
    small_1 = h.submit(resources={"cpu": 1}, priority=1)
    small_2 = h.submit(resources={"cpu": 1})
    w = h.worker()

    # 4 cpus: big (3) and one small (1) fit, the second small does not.
    assert h.leased_ids(w, 10, free={"cpu": 4}) == [big.id, small_1.id]
    assert h.state(small_2.id) is TaskState.QUEUED


def test_a_task_that_does_not_fit_does_not_block_one_behind_it(h):
    gpu = h.submit(resources={"gpu": 1}, priority=10)
    plain = h.submit()
    w = h.worker()

    assert h.leased_ids(w, 10, free={}) == [plain.id]
    assert h.state(gpu.id) is TaskState.QUEUED
