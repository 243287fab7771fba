"""Result references: finding, renaming and resolving `{"$result": ...}` inside JSON."""

from __future__ import annotations

import copy

import pytest

from conveyor.core.refs import find_refs, pick_path, rename_refs, resolve_refs
from conveyor.core.types import JSON

FIND_TABLE: list[tuple[str, JSON, set[str]]] = [
    ("scalar", 5, set()),
    ("none", None, set()),
    ("empty-list", [], set()),
    ("top-level-ref", {"$result": "a"}, {"a"}),
    ("ref-with-path", {"$result": "a", "$path": "x.0"}, {"a"}),
    ("in-list", [1, {"$result": "a"}, "b"], {"a"}),
    ("in-dict", {"x": {"$result": "a"}, "y": 2}, {"a"}),
    (
        "deeply-nested",
        {"x": [[{"y": [{"$result": "deep"}]}]], "z": [{"$result": "shallow"}]},
        {"deep", "shallow"},
    ),
    ("same-ref-twice", [{"$result": "a"}, {"$result": "a", "$path": "b"}], {"a"}),
    ("extra-key-is-not-a-ref", {"$result": "a", "note": "x"}, set()),
    ("extra-key-with-nested-ref", {"$result": "a", "inner": {"$result": "b"}}, {"b"}),
    ("non-string-target", {"$result": 3}, set()),
    ("null-target", {"$result": None}, set()),
    ("path-alone", {"$path": "a"}, set()),
    ("string-mentioning-ref", "$result", set()),
    ("ref-key-as-value", {"key": "$result"}, set()),
]


@pytest.mark.parametrize(
    ("value", "expected"), [row[1:] for row in FIND_TABLE], ids=[row[0] for row in FIND_TABLE]
)
def test_find_refs(value: JSON, expected: set[str]) -> None:
    assert find_refs(value) == expected


RENAME_TABLE: list[tuple[str, JSON, JSON]] = [
    ("scalar", "fetch", "fetch"),
    ("top-level", {"$result": "fetch"}, {"$result": "id-1"}),
    ("keeps-path", {"$result": "fetch", "$path": "a.0"}, {"$result": "id-1", "$path": "a.0"}),
    ("unknown-name-kept", {"$result": "stored-9"}, {"$result": "stored-9"}),
    (
        "nested",
        {"a": [{"$result": "fetch"}, {"$result": "parse"}], "b": {"c": {"$result": "x"}}},
        {"a": [{"$result": "id-1"}, {"$result": "id-2"}], "b": {"c": {"$result": "x"}}},
    ),
    (
        "not-a-ref-untouched",
        {"$result": "fetch", "note": 1},
        {"$result": "fetch", "note": 1},
    ),
    ("plain-strings-untouched", ["fetch", {"fetch": "parse"}], ["fetch", {"fetch": "parse"}]),
]


@pytest.mark.parametrize(
    ("value", "expected"), [row[1:] for row in RENAME_TABLE], ids=[row[0] for row in RENAME_TABLE]
)
def test_rename_refs(value: JSON, expected: JSON) -> None:
    original = copy.deepcopy(value)
    assert rename_refs(value, {"fetch": "id-1", "parse": "id-2"}) == expected
    assert value == original  # the input is not modified


RESULTS: dict[str, JSON] = {
    "t1": {"body": {"links": ["l0", "l1", "l2"], "count": 3, "0": "zero-key"}},
    "t2": [10, [20, 21], {"k": None}],
    "t3": 7,
    "t4": None,
}

RESOLVE_TABLE: list[tuple[str, JSON, JSON]] = [
    ("whole-result", {"$result": "t1"}, RESULTS["t1"]),
    ("scalar-result", {"$result": "t3"}, 7),
    ("null-result", {"$result": "t4"}, None),
    ("dict-keys", {"$result": "t1", "$path": "body.count"}, 3),
    ("list-index", {"$result": "t1", "$path": "body.links.1"}, "l1"),
    ("negative-index", {"$result": "t1", "$path": "body.links.-1"}, "l2"),
    ("most-negative-index", {"$result": "t1", "$path": "body.links.-3"}, "l0"),
    ("digit-dict-key", {"$result": "t1", "$path": "body.0"}, "zero-key"),
    ("top-level-list", {"$result": "t2", "$path": "1.0"}, 20),
    ("null-leaf", {"$result": "t2", "$path": "2.k"}, None),
    ("empty-path", {"$result": "t2", "$path": ""}, RESULTS["t2"]),
    (
        "nested-in-args",
        [1, {"x": {"$result": "t3"}}, [{"$result": "t2", "$path": "0"}]],
        [1, {"x": 7}, [10]],
    ),
    ("non-ref-untouched", {"$result": "t3", "extra": 1}, {"$result": "t3", "extra": 1}),
    ("plain-values-untouched", ["t1", {"t1": 2}, None, 1.5], ["t1", {"t1": 2}, None, 1.5]),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [row[1:] for row in RESOLVE_TABLE],
    ids=[row[0] for row in RESOLVE_TABLE],
)
def test_resolve_refs(value: JSON, expected: JSON) -> None:
    original = copy.deepcopy(value)
    assert resolve_refs(value, RESULTS) == expected
    assert value == original


MISSING_TABLE: list[tuple[str, str, str]] = [
    ("missing-dict-key", "body.nope", "'nope'"),
    ("missing-deep-key", "body.links.0.x", "'x'"),
    ("index-past-end", "body.links.3", "'3'"),
    ("negative-past-start", "body.links.-4", "'-4'"),
    ("word-on-list", "body.links.first", "'first'"),
    ("double-minus-on-list", "body.links.--1", "'--1'"),
    ("superscript-digit-on-list", "body.links.²", "'²'"),
    ("plus-sign-on-list", "body.links.+1", "'+1'"),
    ("into-scalar", "body.count.x", "'x'"),
    ("empty-step", "body..count", "''"),
]


@pytest.mark.parametrize(
    ("path", "step"), [row[1:] for row in MISSING_TABLE], ids=[row[0] for row in MISSING_TABLE]
)
def test_missing_path_raises_key_error_naming_the_step(path: str, step: str) -> None:
    with pytest.raises(KeyError) as caught:
        resolve_refs({"$result": "t1", "$path": path}, RESULTS)
    message = str(caught.value)
    assert f"no {step}" in message
    assert repr(path) in message


def test_missing_result_raises_key_error() -> None:
    with pytest.raises(KeyError, match="t9"):
        resolve_refs({"$result": "t9"}, RESULTS)


def test_pick_path_returns_the_same_object_for_an_empty_path() -> None:
    value: JSON = {"a": 1}
    assert pick_path(value, "") is value
