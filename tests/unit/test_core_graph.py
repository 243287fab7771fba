"""Cycle detection and topological order over `node -> dependencies` maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from conveyor.core.graph import check_acyclic, find_cycle, topological_order
from conveyor.errors import CycleError, InvalidSpecError

Edges = dict[str, list[str]]

ACYCLIC: list[tuple[str, Edges]] = [
    ("empty", {}),
    ("single", {"a": []}),
    ("chain", {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}),
    ("diamond", {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]}),
    ("forest", {"a": [], "b": ["a"], "x": [], "y": ["x"]}),
    ("external-deps", {"a": ["stored-1"], "b": ["a", "stored-2"]}),
    ("only-external", {"a": ["stored-1", "stored-1"]}),
    ("dep-listed-before-node", {"c": ["b"], "b": ["a"], "a": []}),
    ("duplicate-edge", {"a": [], "b": ["a", "a"]}),
    (
        "shared-subtree",
        {"r": [], "s": ["r"], "t": ["s", "r"], "u": ["t", "s"], "v": ["u", "t", "r"]},
    ),
]

CYCLIC: list[tuple[str, Edges]] = [
    ("self-loop", {"a": ["a"]}),
    ("two-cycle", {"a": ["b"], "b": ["a"]}),
    ("three-cycle", {"a": ["c"], "b": ["a"], "c": ["b"]}),
    (
        "three-cycle-inside-dag",
        {
            "root": [],
            "x": ["root"],
            "p": ["x", "r"],
            "q": ["p"],
            "r": ["q", "root"],
            "leaf": ["p", "x"],
            "other": ["root"],
        },
    ),
    ("cycle-behind-a-chain", {"head": ["m"], "m": ["n"], "n": ["o"], "o": ["n"]}),
    ("cycle-after-visited-dag", {"a": [], "b": ["a"], "c": ["b", "d"], "d": ["c"]}),
    ("self-loop-with-external", {"a": ["stored-1", "a"]}),
]


def assert_is_cycle(cycle: Sequence[str], edges: Mapping[str, Sequence[str]]) -> None:
    assert cycle, "a cycle has at least one node"
    assert len(set(cycle)) == len(cycle), f"nodes repeat in {cycle}"
    for index, node in enumerate(cycle):
        following = cycle[(index + 1) % len(cycle)]
        assert following in edges[node], f"{node} does not depend on {following} in {cycle}"


@pytest.mark.parametrize("edges", [e for _, e in ACYCLIC], ids=[i for i, _ in ACYCLIC])
def test_acyclic_graphs_have_no_cycle(edges: Edges) -> None:
    assert find_cycle(edges) is None
    check_acyclic(edges)


@pytest.mark.parametrize("edges", [e for _, e in CYCLIC], ids=[i for i, _ in CYCLIC])
def test_find_cycle_returns_a_real_cycle(edges: Edges) -> None:
    cycle = find_cycle(edges)
    assert cycle is not None
    assert_is_cycle(cycle, edges)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": ["a"]}, {"a"}),
        ({"a": ["b"], "b": ["a"]}, {"a", "b"}),
        (dict(CYCLIC)["three-cycle-inside-dag"], {"p", "q", "r"}),
        (dict(CYCLIC)["cycle-behind-a-chain"], {"n", "o"}),
    ],
    ids=["self-loop", "two-cycle", "three-cycle-inside-dag", "cycle-behind-a-chain"],
)
def test_find_cycle_returns_only_the_cycle_nodes(edges: Edges, expected: set[str]) -> None:
    cycle = find_cycle(edges)
    assert cycle is not None
    assert set(cycle) == expected


@pytest.mark.parametrize(
    "edges",
    [
        {"a": ["x"], "b": ["a"]},  # x -> a would close a cycle, but x is external
        {"a": ["b"]},
    ],
    ids=["external-would-close-loop", "dangling"],
)
def test_external_nodes_are_ignored(edges: Edges) -> None:
    assert find_cycle(edges) is None
    assert topological_order(edges) == [n for n in topological_order(edges) if n in edges]
    assert set(topological_order(edges)) == set(edges)


def _deep_chain(length: int) -> Edges:
    edges: Edges = {"n0": []}
    for index in range(1, length):
        edges[f"n{index}"] = [f"n{index - 1}"]
    return edges


def test_deep_chain_without_recursion_error() -> None:
    edges = _deep_chain(100_000)
    assert find_cycle(edges) is None
    order = topological_order(edges)
    assert order == [f"n{index}" for index in range(100_000)]


def test_deep_cycle_is_found_without_recursion_error() -> None:
    edges = _deep_chain(100_000)
    edges["n0"] = ["n99999"]
    cycle = find_cycle(edges)
    assert cycle is not None
    assert len(cycle) == 100_000
    assert_is_cycle(cycle, edges)


@pytest.mark.parametrize("edges", [e for _, e in ACYCLIC], ids=[i for i, _ in ACYCLIC])
def test_topological_order_puts_dependencies_first(edges: Edges) -> None:
    order = topological_order(edges)
    assert sorted(order) == sorted(edges)
    position = {node: index for index, node in enumerate(order)}
    for node, deps in edges.items():
        for dep in deps:
            if dep in edges:
                assert position[dep] < position[node], f"{dep} after {node} in {order}"


@pytest.mark.parametrize("edges", [e for _, e in CYCLIC], ids=[i for i, _ in CYCLIC])
def test_topological_order_rejects_cycles(edges: Edges) -> None:
    with pytest.raises(CycleError):
        topological_order(edges)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ({"a": ["a"]}, "dependency cycle: a -> a"),
        ({"a": ["b"], "b": ["a"]}, "dependency cycle: a -> b -> a"),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "dependency cycle: a -> b -> c -> a"),
    ],
    ids=["self-loop", "two-cycle", "three-cycle"],
)
def test_cycle_error_lists_the_cycle(edges: Edges, message: str) -> None:
    with pytest.raises(CycleError) as caught:
        check_acyclic(edges)
    error = caught.value
    assert isinstance(error, InvalidSpecError)
    assert error.field == "depends_on"
    assert error.message == message
    assert message in str(error)
    assert_is_cycle(error.cycle, edges)
