"""Suite-wide settings: one header line that says whether the PostgreSQL tests will run."""

from __future__ import annotations

import os


def pytest_report_header() -> str:
    url = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    if url:
        return f"PostgreSQL tests: run against {url}"
    return "PostgreSQL tests: skipped (set CONVEYOR_TEST_POSTGRES_URL to run them)"
