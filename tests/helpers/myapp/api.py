"""A submodule that re-exports a function defined in a sibling module."""

from __future__ import annotations

from tests.helpers.myapp.jobs import work  # noqa: F401
