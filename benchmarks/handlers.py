"""Task functions the benchmark workers import (`--allow-module benchmarks`)."""

from __future__ import annotations


def total(values: list[int]) -> int:
    """The fan-in task of W4: the sum of its upstream tasks' results."""
    return sum(values)
