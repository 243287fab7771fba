"""A `db` fixture that runs an end-to-end test once on SQLite and once on PostgreSQL.

The test module must import `postgres_url` (tests.helpers.postgres) so the fixture can reach it;
without CONVEYOR_TEST_POSTGRES_URL the PostgreSQL case is skipped.
"""

from __future__ import annotations

import pytest

STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest) -> str | None:
    """None (a SQLite file in the cluster's directory) or a PostgreSQL URL with a fresh schema."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None
