"""Durable state: the Store interface and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.store.base import Durability, Store

__all__ = [
    "POSTGRES_SCHEMES",
    "Durability",
    "Store",
    "is_postgres_url",
    "open_store",
    "split_schema",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_store(
    url: str, *, durability: Durability = Durability.NORMAL, accept_wal_loss: bool = False
) -> Store:
    """`postgresql://user@host/db` opens PostgreSQL (`?schema=NAME` keeps Conveyor's tables in
    that schema); anything else is a SQLite file path (`sqlite:///path` is accepted too).
    Drivers are imported only when used. `durability` and `accept_wal_loss` are SQLite's (see
    Durability: PostgreSQL always commits durably)."""
    if is_postgres_url(url):
        from conveyor.store.postgres import PostgresStore

        conninfo, schema = split_schema(url)
        return PostgresStore(conninfo, schema=schema)
    from conveyor.store.sqlite import SQLiteStore

    return SQLiteStore(
        url.removeprefix("sqlite://"), durability=durability, accept_wal_loss=accept_wal_loss
    )


def split_schema(url: str) -> tuple[str, str | None]:
    """Take Conveyor's own `schema` parameter out of a PostgreSQL URL; libpq would refuse it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None
