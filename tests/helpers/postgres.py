"""A PostgreSQL database for a test: a fresh schema on CONVEYOR_TEST_POSTGRES_URL, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CONVEYOR_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    import psycopg

    schema = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}schema={schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def terminate_connections(base_url: str, schema: str) -> int:
    """Kill every connection whose search_path is `schema` (a server's pool), as a restart would."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND backend_type = 'client backend' AND application_name <> 'conveyor-test'"
        ).fetchall()
    return len(rows)
