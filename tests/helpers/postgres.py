"""A PostgreSQL database for a test: a fresh schema on CONVEYOR_TEST_POSTGRES_URL, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Any]:
    """An Engine on a PostgresStore of a fresh schema, with a small pool (4 connections)."""
    from conveyor.engine import Engine
    from conveyor.store import split_schema
    from conveyor.store.postgres import PostgresStore

    url, schema = split_schema(postgres_url)
    store = PostgresStore(url, schema=schema, min_connections=1, max_connections=4)
    try:
        yield Engine(store)
    finally:
        store.close()


def in_one_group(engine: Any, middle: Any, name: str) -> list[Any]:
    """Three calls run by one group commit, in one transaction: a submit named "before",
    `middle(name)`, a submit named "after"; what each returned or raised, in that order."""
    import asyncio

    from conveyor.core.spec import TaskSpec
    from conveyor.engine.group_commit import GroupCommit

    commits = GroupCommit(engine.store, engine.events, autostart=False)

    async def main() -> list[Any]:
        calls = asyncio.gather(
            commits.run(engine.submit, TaskSpec(handler="noop", name="before")),
            commits.run(middle, name),
            commits.run(engine.submit, TaskSpec(handler="noop", name="after")),
            return_exceptions=True,
        )
        await asyncio.sleep(0.01)  # all three are queued: they form one group
        commits.start()
        return await calls

    try:
        return asyncio.run(main())
    finally:
        commits.stop()
