"""plan_batch: names to ids, implicit dependencies from `$result`, and what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.batch import PlannedTask, plan_batch
from conveyor.core.spec import TaskSpec
from conveyor.errors import CycleError, InvalidSpecError


def spec(handler: str = "noop", **fields: Any) -> TaskSpec:
    return TaskSpec(handler=handler, **fields)


def plan(*specs: TaskSpec) -> list[PlannedTask]:
    return plan_batch(specs, [f"id-{index}" for index in range(len(specs))])


def test_empty_batch() -> None:
    assert plan_batch([], []) == []


def test_one_id_per_spec() -> None:
    with pytest.raises(ValueError, match="one id per spec"):
        plan_batch([spec()], [])


def test_planned_tasks_take_the_given_ids_in_order() -> None:
    specs = [spec(name="a"), spec(), spec(name="c")]
    planned = plan_batch(specs, ["x1", "x2", "x3"])
    assert [p.id for p in planned] == ["x1", "x2", "x3"]
    assert [p.spec for p in planned] == specs
    assert all(p.depends_on == [] and not p.has_refs for p in planned)


DEPENDS_TABLE: list[tuple[str, list[TaskSpec], list[list[str]]]] = [
    (
        "name-to-id",
        [spec(name="fetch"), spec(name="parse", depends_on=["fetch"])],
        [[], ["id-0"]],
    ),
    (
        "forward-reference",
        [spec(name="parse", depends_on=["fetch"]), spec(name="fetch")],
        [["id-1"], []],
    ),
    ("external-id-kept", [spec(depends_on=["stored-42"])], [["stored-42"]]),
    (
        "names-and-external-mixed",
        [spec(name="a"), spec(name="b", depends_on=["stored-1", "a", "stored-2"])],
        [[], ["stored-1", "id-0", "stored-2"]],
    ),
    (
        "implicit-from-args-ref",
        [spec(name="fetch"), spec(args=[{"$result": "fetch"}])],
        [[], ["id-0"]],
    ),
    (
        "implicit-from-kwargs-ref",
        [spec(name="fetch"), spec(kwargs={"data": {"$result": "fetch", "$path": "body"}})],
        [[], ["id-0"]],
    ),
    (
        "explicit-and-ref-not-doubled",
        [spec(name="fetch"), spec(depends_on=["fetch"], args=[{"$result": "fetch"}])],
        [[], ["id-0"]],
    ),
    (
        "explicit-first-then-refs-sorted",
        [
            spec(name="a"),
            spec(name="b"),
            spec(name="c"),
            spec(depends_on=["c"], kwargs={"x": {"$result": "b"}, "y": [{"$result": "a"}]}),
        ],
        [[], [], [], ["id-2", "id-0", "id-1"]],
    ),
    ("ref-to-external-id", [spec(args=[{"$result": "stored-7"}])], [["stored-7"]]),
    ("not-a-ref-no-dependency", [spec(name="a"), spec(args=[{"$result": "a", "x": 1}])], [[], []]),
    (
        "diamond",
        [
            spec(name="top"),
            spec(name="left", depends_on=["top"]),
            spec(name="right", depends_on=["top"]),
            spec(name="bottom", depends_on=["left", "right"]),
        ],
        [[], ["id-0"], ["id-0"], ["id-1", "id-2"]],
    ),
]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [row[1:] for row in DEPENDS_TABLE],
    ids=[row[0] for row in DEPENDS_TABLE],
)
def test_dependencies_resolved(specs: list[TaskSpec], expected: list[list[str]]) -> None:
    assert [p.depends_on for p in plan(*specs)] == expected


def test_refs_are_rewritten_to_ids() -> None:
    planned = plan(
        spec(name="fetch"),
        spec(
            name="use",
            args=[1, {"$result": "fetch", "$path": "body.0"}, {"$result": "stored-3"}],
            kwargs={"nested": [{"k": {"$result": "fetch"}}], "plain": "fetch"},
        ),
    )
    use = planned[1]
    assert use.has_refs
    assert use.args == [1, {"$result": "id-0", "$path": "body.0"}, {"$result": "stored-3"}]
    assert use.kwargs == {"nested": [{"k": {"$result": "id-0"}}], "plain": "fetch"}
    # the submitted spec itself keeps the names
    assert use.spec.args[1] == {"$result": "fetch", "$path": "body.0"}
    assert not planned[0].has_refs


def test_without_refs_args_are_the_spec_args() -> None:
    planned = plan(spec(args=[1, {"a": "b"}], kwargs={"k": [2]}))[0]
    assert not planned.has_refs
    assert planned.args == [1, {"a": "b"}]
    assert planned.kwargs == {"k": [2]}


REJECT_TABLE: list[tuple[str, list[TaskSpec], str, str]] = [
    ("duplicate-name", [spec(name="a"), spec(name="b"), spec(name="a")], "name", "a"),
    ("duplicate-key-named", [spec(key="k"), spec(name="second", key="k")], "key", "second"),
    ("duplicate-key-unnamed", [spec(key="k"), spec(key="j"), spec(key="k")], "key", "#2"),
    ("self-dependency-by-name", [spec(name="a", depends_on=["a"])], "depends_on", "a"),
    ("self-dependency-by-ref", [spec(name="a", args=[{"$result": "a"}])], "depends_on", "a"),
    ("self-dependency-by-id", [spec("sha256", depends_on=["id-0"])], "depends_on", "sha256"),
]


@pytest.mark.parametrize(
    ("specs", "field", "task"),
    [row[1:] for row in REJECT_TABLE],
    ids=[row[0] for row in REJECT_TABLE],
)
def test_rejected_with_field_and_task(specs: list[TaskSpec], field: str, task: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        plan(*specs)
    error = caught.value
    assert not isinstance(error, CycleError)
    assert error.field == field
    assert error.task == task
    assert f"task {task!r}" in str(error)
    assert f"field {field!r}" in str(error)


def test_same_key_in_different_batches_is_fine_here() -> None:
    # Keys are deduplicated against stored tasks by the engine, not by the planner.
    assert len(plan(spec(key="k"))) == 1


CYCLE_TABLE: list[tuple[str, list[TaskSpec], set[str]]] = [
    (
        "two-cycle",
        [spec(name="a", depends_on=["b"]), spec(name="b", depends_on=["a"])],
        {"a", "b"},
    ),
    (
        "three-cycle-by-refs",
        [
            spec(name="a", args=[{"$result": "c"}]),
            spec(name="b", args=[{"$result": "a"}]),
            spec(name="c", kwargs={"x": {"$result": "b"}}),
        ],
        {"a", "b", "c"},
    ),
    (
        "cycle-inside-dag",
        [
            spec(name="root"),
            spec(name="p", depends_on=["root", "r"]),
            spec(name="q", depends_on=["p"]),
            spec(name="r", depends_on=["q", "stored-1"]),
            spec(name="leaf", depends_on=["p"]),
        ],
        {"p", "q", "r"},
    ),
]


@pytest.mark.parametrize(
    ("specs", "names"), [row[1:] for row in CYCLE_TABLE], ids=[row[0] for row in CYCLE_TABLE]
)
def test_cycles_are_rejected_listing_names(specs: list[TaskSpec], names: set[str]) -> None:
    with pytest.raises(CycleError) as caught:
        plan(*specs)
    error = caught.value
    assert set(error.cycle) == names
    assert error.field == "depends_on"
    assert "id-" not in str(error)
    for name in names:
        assert name in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_unnamed_tasks_in_a_cycle_are_listed_by_id() -> None:
    with pytest.raises(CycleError) as caught:
        plan_batch(
            [spec(name="a", depends_on=["new-2"]), spec(depends_on=["a"])], ["new-1", "new-2"]
        )
    assert set(caught.value.cycle) == {"a", "new-2"}
