"""PostgreSQL for the benchmark: one fresh schema per system, and the durability it gives."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import psycopg


def unavailable(url: str | None) -> str | None:
    """None when `url` answers; otherwise why the PostgreSQL systems are skipped."""
    if not url:
        return "pass --postgres URL"
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"cannot connect to {url} ({exc})"
    return None


def durability(url: str) -> str:
    """What a commit survives on this server, from its own settings."""
    with psycopg.connect(url) as conn:
        sync = conn.execute("SHOW synchronous_commit").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert sync is not None and fsync is not None
    if fsync[0] == "on" and sync[0] in ("on", "remote_write", "remote_apply"):
        return f"PostgreSQL synchronous_commit={sync[0]}, fsync=on: survives power loss"
    return f"PostgreSQL synchronous_commit={sync[0]}, fsync={fsync[0]}: may lose recent commits"


class Schema:
    """A schema of its own for one system, dropped at the end; `url` puts it first on the
    search path, for libpq clients (psycopg) that read `options` from the URL."""

    def __init__(self, url: str, label: str) -> None:
        self.base_url = url
        self.name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        separator = "&" if "?" in url else "?"
        self.url = f"{url}{separator}options={quote(f'-c search_path={self.name}')}"

    def drop(self) -> None:
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
