"""Dependency graphs of one batch: name resolution, cycle detection, topological order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.errors import CycleError


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in `node -> dependencies` as a list of nodes, or None. Iterative: deep DAGs are fine."""
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    for root in edges:
        if colour.get(root, white) != white:
            continue
        path: list[str] = [root]
        iterators = [iter(edges.get(root, ()))]
        colour[root] = grey
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                colour[path.pop()] = black
                iterators.pop()
                continue
            state = colour.get(child, white)
            if state == grey:
                return path[path.index(child) :]
            if state == white and child in edges:
                colour[child] = grey
                path.append(child)
                iterators.append(iter(edges[child]))
        # nodes outside `edges` are external (already stored) and cannot close a cycle
    return None


def check_acyclic(edges: Mapping[str, Sequence[str]]) -> None:
    cycle = find_cycle(edges)
    if cycle is not None:
        raise CycleError(cycle)


def topological_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Nodes of `edges` with every node after its in-graph dependencies (Kahn's algorithm)."""
    indegree = {node: 0 for node in edges}
    dependents: dict[str, list[str]] = {node: [] for node in edges}
    for node, deps in edges.items():
        for dep in deps:
            if dep in edges:
                indegree[node] += 1
                dependents[dep].append(node)
    ready = [node for node, count in indegree.items() if count == 0]
    order: list[str] = []
    while ready:
        node = ready.pop()
        order.append(node)
        for child in dependents[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) != len(edges):
        check_acyclic(edges)
    return order
