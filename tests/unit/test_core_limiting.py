"""conveyor.core.limiting: what a limit allows, the keys a task takes, and admitting candidates
in lease order. Pure, table-driven."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from conveyor.core.limiting import (
    Admission,
    Full,
    Limit,
    LimitKeyError,
    Usage,
    expand_limits,
    full,
    limit_name,
    room,
    starts_to_leave,
)
from conveyor.core.spec import TaskSpec
from conveyor.core.types import JSON

# ---- a limit ----------------------------------------------------------------------------------


def test_a_limit_limits_something() -> None:
    with pytest.raises(ValidationError, match="concurrency, rate, or both"):
        Limit(name="db")
    for bad in ({"name": "a:b", "concurrency": 1}, {"name": "db", "concurrency": -1},
                {"name": "db", "rate": 1, "per_s": 0}, {"name": "db", "concurrency": True}):  # fmt: skip
        with pytest.raises(ValidationError):
            Limit.model_validate(bad)


@pytest.mark.parametrize(
    ("limit", "usage", "expected_room", "expected_full"),
    [
        (Limit(name="db", concurrency=2), Usage(running=0), 2, None),
        (Limit(name="db", concurrency=2), Usage(running=2), 0, Full.CONCURRENCY),
        (Limit(name="db", concurrency=2), Usage(running=3), 0, Full.CONCURRENCY),
        (Limit(name="db", concurrency=0), Usage(), 0, Full.CONCURRENCY),
        (Limit(name="api", rate=2, per_s=10), Usage(started=1), 1, None),
        (Limit(name="api", rate=2, per_s=10), Usage(started=3), 0, Full.RATE),
        (Limit(name="api", concurrency=5, rate=2, per_s=10), Usage(1, 1), 1, None),
        (Limit(name="api", concurrency=1, rate=2, per_s=10), Usage(1, 1), 0, Full.CONCURRENCY),
        (Limit(name="api", concurrency=1, rate=2, per_s=10), Usage(0, 2), 0, Full.RATE),
    ],
)
def test_room_and_what_is_full(
    limit: Limit, usage: Usage, expected_room: int, expected_full: Full | None
) -> None:
    assert room(limit, usage) == expected_room
    assert full(limit, usage) is expected_full


def test_a_full_rate_reopens_once_enough_starts_have_left_the_window() -> None:
    limit = Limit(name="api", rate=2, per_s=10)
    assert starts_to_leave(limit, Usage(started=2)) == 1
    assert starts_to_leave(limit, Usage(started=4)) == 3
    assert starts_to_leave(limit, Usage(started=1)) is None, "not full"
    assert starts_to_leave(Limit(name="api", rate=0), Usage()) is None, "never by itself"
    assert starts_to_leave(Limit(name="db", concurrency=1), Usage(running=1)) is None
    assert limit.window == timedelta(seconds=10)
    assert Limit(name="db", concurrency=1, per_s=10).window == timedelta(0), "no rate: no window"


def test_a_key_belongs_to_the_limit_before_its_first_colon() -> None:
    assert [limit_name(k) for k in ("db", "tenant:acme", "t:a:b")] == ["db", "tenant", "t"]


# ---- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        (["db"], ["db"]),
        (["tenant:{kwargs.tenant}"], ["tenant:acme"]),
        (["shard:{args.1}", "team:{labels.team}"], ["shard:7", "team:core"]),
        (["x:{kwargs.flag}-{kwargs.ratio}"], ["x:true-0.5"]),
        (["db", "db"], ["db"]),
        (["tenant:{kwargs.tenant}", "tenant:acme"], ["tenant:acme"]),
    ],
)
def test_keys_are_filled_in_from_arguments_and_labels(refs: list[str], expected: list[str]) -> None:
    kwargs: dict[str, JSON] = {"tenant": "acme", "flag": True, "ratio": 0.5}
    assert expand_limits(refs, ["a", 7], kwargs, {"team": "core"}) == expected


@pytest.mark.parametrize(
    ("refs", "index", "message"),
    [
        (["db", "tenant:{kwargs.tenant}"], 1, "kwargs has no 'tenant'"),
        (["shard:{args.3}"], 0, "2 positional argument"),
        (["team:{labels.team}"], 0, "labels has no 'team'"),
        (["x:{kwargs.nested}"], 0, "text or numbers"),
        (["x:{kwargs.ref}"], 0, "text or numbers"),
        (["x:{kwargs.long}"], 0, "characters once filled in"),
    ],
)
def test_a_key_that_cannot_be_filled_in_names_its_entry(
    refs: list[str], index: int, message: str
) -> None:
    kwargs: dict[str, JSON] = {"nested": {"a": 1}, "ref": {"$result": "t1"}, "long": "x" * 300}
    with pytest.raises(LimitKeyError, match=message) as refused:
        expand_limits(refs, ["a", "b"], kwargs, {})
    assert refused.value.index == index


@pytest.mark.parametrize(
    "ref",
    ["", ":x", "a b", "tenant:{kwargs}", "tenant:{nope.x}", "tenant:{args.x}", "t:{", "t:}", "a" * 101],
)  # fmt: skip
def test_a_spec_refuses_a_malformed_limit(ref: str) -> None:
    with pytest.raises(ValidationError):
        TaskSpec(handler="noop", limits=[ref])


def test_a_spec_keeps_its_limits_as_written_without_duplicates() -> None:
    spec = TaskSpec(handler="noop", limits=["db", "tenant:{kwargs.t}", "db"])
    assert spec.limits == ["db", "tenant:{kwargs.t}"]


# ---- admitting --------------------------------------------------------------------------------


def test_admission_takes_slots_in_order_and_says_where_each_refused_task_waits() -> None:
    admission = Admission({"db": 2, "tenant:a": 1, "tenant:b": 1}, busy={"busy"})
    decisions = [
        admission.admit("t1", ["db", "tenant:a"]),
        admission.admit("t2", ["db", "tenant:a"]),
        admission.admit("t3", ["db", "tenant:b"]),
        admission.admit("t4", ["db", "tenant:b"]),
        admission.admit("t5", ["unlimited"]),
        admission.admit("t6", []),
        admission.admit("t7", ["busy"]),
    ]
    assert decisions == [True, False, True, False, True, True, False]
    assert admission.held == {"t2": "tenant:a", "t4": "db"}, "t7's key was busy: not held"
