"""A submodule of the stand-in package: its own functions, and one re-exported by `api`."""

from __future__ import annotations


def work(n: int) -> int:
    return n + 1
