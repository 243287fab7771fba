"""Suite-wide settings: one header line that says whether the PostgreSQL tests will run, the
process environment restored after every test, and a SIGTERM that stops the suite's clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from conveyor.testing import interrupt_on_sigterm


def pytest_configure(config: pytest.Config) -> None:
    # A suite stopped with SIGTERM (`timeout`, a cancelled job) stops the servers and workers
    # its clusters started too, instead of leaving them running.
    interrupt_on_sigterm()


def pytest_report_header() -> str:
    url = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    if url:
        return f"PostgreSQL tests: run against {url}"
    return "PostgreSQL tests: skipped (set CONVEYOR_TEST_POSTGRES_URL to run them)"


@pytest.fixture(autouse=True)
def _environment_kept() -> Iterator[None]:
    """Every test leaves the process environment as it found it. A worker program makes its
    environment its tasks' (conveyor.worker.protection), which run in-process by CliRunner would
    strip the test process's own (PATH included) for every later test."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)
