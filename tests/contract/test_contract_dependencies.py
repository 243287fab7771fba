"""Dependencies: waiting, release, failure propagation, cycles, batches, `$result` references."""

from __future__ import annotations

import pytest

from conveyor.core.states import Outcome, Reason, TaskState
from conveyor.errors import CycleError, InvalidSpecError


def _total(h) -> int:
    return sum(c.count for c in h.engine.counts())


# ---- waiting for parents --------------------------------------------------------------------


def test_a_child_waits_pending_until_its_parent_succeeds(h):
    parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()

    assert h.states(parent, child) == [TaskState.QUEUED, TaskState.PENDING]
    assert h.get(child.id).deps_left == 1

    a = h.lease_one(w)
    assert a.task_id == parent.id
    assert h.lease(w) == []  # the child is not ready while its parent runs
    assert h.state(child.id) is TaskState.PENDING

    h.succeed(w, a)

    assert h.state(child.id) is TaskState.QUEUED
    assert h.get(child.id).deps_left == 0
    assert h.leased_ids(w) == [child.id]


def test_a_child_waits_for_every_parent(h):
    p1, p2, child = h.submit_batch(
        {"name": "p1"}, {"name": "p2"}, {"name": "child", "depends_on": ["p1", "p2"]}
    )
    w = h.worker()
    a1, a2 = h.lease(w, 2)
    assert {a1.task_id, a2.task_id} == {p1.id, p2.id}

    h.succeed(w, a1)
    assert h.state(child.id) is TaskState.PENDING
    assert h.get(child.id).deps_left == 1
    assert h.lease(w) == []

    h.succeed(w, a2)
    assert h.state(child.id) is TaskState.QUEUED
    assert h.leased_ids(w) == [child.id]


def test_a_diamond_runs_in_dependency_order(h):
    tasks = h.submit_batch(
        {"name": "top"},
        {"name": "left", "depends_on": ["top"]},
        {"name": "right", "depends_on": ["top"]},
        {"name": "bottom", "depends_on": ["left", "right"]},
    )
    names = {t.id: t.name for t in tasks}
    w = h.worker()

    rounds: list[set[str]] = []
    while leased := h.lease(w, 10):
        rounds.append({names[a.task_id] for a in leased})
        for a in leased:
            h.succeed(w, a)

    assert rounds == [{"top"}, {"left", "right"}, {"bottom"}]
    assert all(s is TaskState.SUCCEEDED for s in h.states(*tasks))


def test_a_dependency_on_a_stored_task_id(h):
    parent = h.submit()
    child = h.submit(depends_on=[parent.id])
    w = h.worker()

    assert child.depends_on == [parent.id]
    assert h.state(child.id) is TaskState.PENDING
    h.run_next(w)
    assert h.leased_ids(w) == [child.id]


def test_a_dependency_on_an_already_succeeded_task_is_ready_at_once(h):
    parent = h.submit()
    h.run_next(h.worker())

    child = h.submit(depends_on=[parent.id])

    assert child.state is TaskState.QUEUED
    assert child.deps_left == 0


def test_a_batch_may_mix_names_and_stored_ids(h):
    stored = h.submit(name="stored")
    first, second = h.submit_batch(
        {"name": "first"}, {"name": "second", "depends_on": ["first", stored.id]}
    )

    assert set(second.depends_on) == {first.id, stored.id}
    assert second.deps_left == 2


def test_an_unknown_dependency_is_refused_naming_depends_on(h):
    before = _total(h)

    with pytest.raises(InvalidSpecError) as err:
        h.submit(name="orphan", depends_on=["no-such-task"])

    assert err.value.field == "depends_on"
    assert "no-such-task" in str(err.value)
    assert "depends_on" in str(err.value)
    assert _total(h) == before


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([{"name": "bad", "depends_on": ["missing"]}], id="unknown-dependency"),
        pytest.param([{"name": "a"}], id="duplicate-name"),
        pytest.param([{"name": "bad", "key": "k1"}], id="duplicate-key"),
        pytest.param([{"name": "bad", "depends_on": ["bad"]}], id="self-dependency"),
        pytest.param(
            [{"name": "x", "depends_on": ["y"]}, {"name": "y", "depends_on": ["x", "c"]}],
            id="cycle",
        ),
    ],
)
def test_a_batch_with_one_invalid_spec_stores_nothing(h, extra):
    h.submit(name="existing")
    before = h.engine.counts()
    specs = [
        {"name": "a", "key": "k1"},
        {"name": "b", "depends_on": ["a"]},
        {"name": "c", "depends_on": ["b"]},
        *extra,
    ]

    with pytest.raises(InvalidSpecError):
        h.submit_batch(*specs)

    assert h.engine.counts() == before
    assert [t.name for t in h.engine.list_tasks()] == ["existing"]
    # the key was not taken by the refused batch
    assert h.submit(key="k1").name is None


# ---- cycles ---------------------------------------------------------------------------------


def test_a_cycle_in_a_batch_is_refused_naming_its_tasks(h):
    with pytest.raises(CycleError) as err:
        h.submit_batch(
            {"name": "a", "depends_on": ["c"]},
            {"name": "b", "depends_on": ["a"]},
            {"name": "c", "depends_on": ["b"]},
            {"name": "outside"},
        )

    assert set(err.value.cycle) == {"a", "b", "c"}
    assert err.value.field == "depends_on"
    for name in ("a", "b", "c"):
        assert name in str(err.value)
    assert h.engine.list_tasks() == []


def test_a_two_task_cycle_is_refused(h):
    with pytest.raises(CycleError) as err:
        h.submit_batch({"name": "x", "depends_on": ["y"]}, {"name": "y", "depends_on": ["x"]})

    assert set(err.value.cycle) == {"x", "y"}
    assert h.engine.list_tasks() == []


def test_a_cycle_through_result_references_is_refused(h):
    with pytest.raises(CycleError):
        h.submit_batch(
            {"name": "x", "args": [{"$result": "y"}]},
            {"name": "y", "args": [{"$result": "x"}]},
        )
    assert h.engine.list_tasks() == []


def test_a_self_dependency_is_refused(h):
    with pytest.raises(InvalidSpecError) as err:
        h.submit_batch({"name": "me", "depends_on": ["me"]})

    assert err.value.field == "depends_on"
    assert h.engine.list_tasks() == []


# ---- dependency failure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "parent_state"),
    [
        (Outcome.FAILED, TaskState.FAILED),
        (Outcome.TIMED_OUT, TaskState.TIMED_OUT),
        (Outcome.CRASHED, TaskState.FAILED),
        (Outcome.CANCELLED, TaskState.CANCELLED),
    ],
)
def test_an_unsuccessful_parent_fails_every_descendant_unrun(h, outcome, parent_state):
    tasks = h.submit_batch(
        {"name": "root"},
        {"name": "child", "depends_on": ["root"]},
        {"name": "grandchild", "depends_on": ["child"]},
        {"name": "great", "depends_on": ["grandchild"]},
        {"name": "side", "depends_on": ["root", "unrelated"]},
        {"name": "unrelated"},
    )
    root, *descendants, unrelated = tasks
    w = h.worker()
    a = h.lease_one(w)
    assert a.task_id == root.id
    recorder = h.record_events()

    assert h.report(w, a, outcome) is parent_state

    for task in descendants:
        got = h.get(task.id)
        assert got.state is TaskState.FAILED, task.name
        assert got.reason is Reason.DEPENDENCY_FAILED, task.name
        assert got.error and "ended" in got.error
        assert got.attempts == 0
        assert h.engine.attempts(task.id) == []
    assert recorder.finished >= {root.id, *(t.id for t in descendants)}
    # only the independent task is left to run
    assert h.leased_ids(w) == [unrelated.id]


def test_the_dependency_failed_error_names_the_parent(h):
    _parent, child = h.submit_batch({"name": "parent"}, {"name": "child", "depends_on": ["parent"]})
    w = h.worker()
    h.fail(w, h.lease_one(w))

    assert "parent" in (h.get(child.id).error or "")


def test_a_child_submitted_after_its_parent_failed_is_created_failed(h):
    parent = h.submit()
    w = h.worker()
    h.fail(w, h.lease_one(w))
    recorder = h.record_events()

    child = h.submit(depends_on=[parent.id])

    assert child.state is TaskState.FAILED
    assert child.reason is Reason.DEPENDENCY_FAILED
    assert h.state(child.id) is TaskState.FAILED
    assert child.id in recorder.finished
    assert h.lease(w) == []


def test_a_child_of_a_cancelled_task_is_created_failed(h):
    parent = h.submit()
    h.engine.cancel(parent.id)

    child = h.submit(depends_on=[parent.id])

    assert child.state is TaskState.FAILED
    assert child.reason is Reason.DEPENDENCY_FAILED


def test_a_parent_failing_after_retries_fails_its_children_only_at_the_end(h):
    parent, child = h.submit_batch(
        {"name": "parent", "max_retries": 1, "retry": {"backoff_s": 1, "jitter": 0}},
        {"name": "child", "depends_on": ["parent"]},
    )
    w = h.worker()

    h.fail(w, h.lease_one(w))
    assert h.state(child.id) is TaskState.PENDING  # parent will retry

    h.clock.advance(1)
    h.fail(w, h.lease_one(w))
    assert h.state(parent.id) is TaskState.FAILED
    assert h.get(child.id).reason is Reason.DEPENDENCY_FAILED


# ---- idempotent submit ----------------------------------------------------------------------


def test_a_second_submit_with_the_same_key_returns_the_first_task(h):
    first = h.submit(name="first", key="order-42", args=[1])
    before = _total(h)

    second = h.submit(name="second", key="order-42", args=[2])

    assert second.id == first.id
    assert second.name == "first"
    assert second.args == [1]
    assert _total(h) == before


def test_an_idempotent_resubmit_of_a_finished_task_returns_it_finished(h):
    first = h.submit(key="k")
    h.run_next(h.worker(), result={"done": True})

    again = h.submit(key="k")

    assert again.id == first.id
    assert again.state is TaskState.SUCCEEDED
    assert again.result == {"done": True}


def test_a_batch_naming_a_keyed_spec_that_exists_depends_on_the_stored_task(h):
    stored = h.submit(name="fetch", key="fetch-1")
    before = _total(h)

    fetch, parse = h.submit_batch(
        {"name": "fetch", "key": "fetch-1"},
        {"name": "parse", "depends_on": ["fetch"], "args": [{"$result": "fetch"}]},
    )

    assert fetch.id == stored.id
    assert parse.depends_on == [stored.id]
    assert parse.args == [{"$result": stored.id}]
    assert _total(h) == before + 1

    w = h.worker()
    h.run_next(w, result="payload")
    a = h.lease_one(w)
    assert a.task_id == parse.id
    assert a.args == ["payload"]


def test_a_batch_whose_keyed_parent_already_succeeded_starts_its_child_at_once(h):
    stored = h.submit(name="fetch", key="fetch-1")
    h.run_next(h.worker())

    _fetch, parse = h.submit_batch(
        {"name": "fetch", "key": "fetch-1"}, {"name": "parse", "depends_on": ["fetch"]}
    )

    assert parse.depends_on == [stored.id]
    assert parse.state is TaskState.QUEUED


def test_a_child_naming_a_reused_task_by_name_and_by_id_waits_for_it_once(h):
    stored = h.submit(name="fetch", key="fetch-1")

    _fetch, parse = h.submit_batch(
        {"name": "fetch", "key": "fetch-1"},
        {"name": "parse", "depends_on": ["fetch", stored.id]},
    )

    assert parse.depends_on == [stored.id]
    assert parse.deps_left == 1
    w = h.worker()
    h.run_next(w)
    assert h.leased_ids(w) == [parse.id]


def test_a_resubmitted_batch_returns_the_same_tasks(h):
    specs = ({"name": "a", "key": "ka"}, {"name": "b", "key": "kb", "depends_on": ["a"]})
    first = h.submit_batch(*specs)
    before = _total(h)

    second = h.submit_batch(*specs)

    assert [t.id for t in second] == [t.id for t in first]
    assert _total(h) == before


# ---- $result references ---------------------------------------------------------------------


def test_a_downstream_task_receives_its_upstream_result(h):
    _fetch, parse = h.submit_batch(
        {"name": "fetch"},
        {
            "name": "parse",
            "args": [{"$result": "fetch"}, "literal"],
            "kwargs": {"body": {"$result": "fetch"}, "nested": [{"x": {"$result": "fetch"}}]},
        },
    )
    w = h.worker()
    result = {"status": 200, "body": {"links": ["a", "b"]}}

    h.run_next(w, result=result)
    a = h.lease_one(w)

    assert a.task_id == parse.id
    assert a.args == [result, "literal"]
    assert a.kwargs == {"body": result, "nested": [{"x": result}]}
    # the stored spec keeps the reference; only the assignment carries the value
    assert h.get(parse.id).args[0] == {"$result": _fetch.id}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("status", 200),
        ("body.links", ["a", "b"]),
        ("body.links.0", "a"),
        ("body.links.-1", "b"),
        ("", {"status": 200, "body": {"links": ["a", "b"]}}),
    ],
)
def test_a_result_path_picks_part_of_the_upstream_result(h, path, expected):
    h.submit_batch(
        {"name": "fetch"}, {"name": "use", "args": [{"$result": "fetch", "$path": path}]}
    )
    w = h.worker()
    h.run_next(w, result={"status": 200, "body": {"links": ["a", "b"]}})

    assert h.lease_one(w).args == [expected]


def test_a_result_reference_implies_a_dependency(h):
    fetch, parse = h.submit_batch(
        {"name": "fetch"}, {"name": "parse", "kwargs": {"data": {"$result": "fetch"}}}
    )

    assert parse.depends_on == [fetch.id]
    assert parse.state is TaskState.PENDING
    w = h.worker()
    assert h.leased_ids(w) == [fetch.id]


def test_a_result_reference_by_stored_task_id(h):
    upstream = h.submit()
    w = h.worker()
    h.run_next(w, result=[1, 2, 3])

    downstream = h.submit(args=[{"$result": upstream.id, "$path": "1"}])

    assert downstream.depends_on == [upstream.id]
    assert h.lease_one(w).args == [2]


def test_a_result_reference_to_a_failed_task_fails_the_consumer(h):
    _up, down = h.submit_batch({"name": "up"}, {"name": "down", "args": [{"$result": "up"}]})
    w = h.worker()
    h.fail(w, h.lease_one(w))

    assert h.get(down.id).reason is Reason.DEPENDENCY_FAILED


@pytest.mark.parametrize(
    "path",
    ["missing", "body.nope", "body.links.7", "status.deeper"],
)
def test_a_bad_result_path_fails_the_task_with_a_clear_error(h, path):
    _up, down = h.submit_batch(
        {"name": "up"},
        {"name": "down", "args": [{"$result": "up", "$path": path}]},
    )
    w = h.worker()
    h.run_next(w, result={"status": 200, "body": {"links": ["a"]}})

    assert h.lease(w) == []  # never handed to a worker

    got = h.get(down.id)
    assert got.state is TaskState.FAILED
    assert got.error is not None
    assert "$result" in got.error
    assert repr(path) in got.error
    attempts = h.engine.attempts(down.id)
    assert [a.outcome for a in attempts] == [Outcome.FAILED]
