"""Choosing and configuring a store from the --db value."""

from __future__ import annotations

import pytest

from conveyor.store import is_postgres_url, split_schema


@pytest.mark.parametrize(
    ("url", "conninfo", "schema"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db", None),
        ("postgresql://u@h/db?schema=s1", "postgresql://u@h/db", "s1"),
        (
            "postgresql://u@h/db?sslmode=require&schema=s1",
            "postgresql://u@h/db?sslmode=require",
            "s1",
        ),
        ("postgres://u:pw@h:5433/db?schema=", "postgres://u:pw@h:5433/db", None),
    ],
)
def test_schema_is_taken_out_of_the_url(url: str, conninfo: str, schema: str | None) -> None:
    assert split_schema(url) == (conninfo, schema)


@pytest.mark.parametrize(
    ("url", "postgres"),
    [
        ("postgresql://h/db", True),
        ("postgres://h/db", True),
        ("conveyor.db", False),
        ("sqlite:///x.db", False),
    ],
)
def test_postgres_urls_are_recognised(url: str, postgres: bool) -> None:
    assert is_postgres_url(url) is postgres
