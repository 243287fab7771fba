"""/health: unhealthy (503) while the store cannot write, and never showing raw database errors.

Disk full is simulated by capping the SQLite file at its current size (`PRAGMA max_page_count`
on the store's writing connection): a write that needs a new page then fails with SQLITE_FULL,
"database or disk is full", as on a full disk, and works again once the cap is lifted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine import Engine
from conveyor.errors import StoreError
from conveyor.store.sqlite import SQLiteStore
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio

RAW = ("full", "sqlite", "disk", "/")
"""Nothing of the database's own message, nor a path, in the open answer."""


def cap_at_current_size(store: SQLiteStore, cap: bool = True) -> None:
    # The store's one writing connection: max_page_count holds per connection.
    writer = store._writer
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages if cap else 1_073_741_823}")


async def test_health_is_503_while_writes_fail_for_a_full_disk_then_ok_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "full.db")
    try:
        async with serve(Engine(store)) as served:
            assert (await served.http.get("/health")).status_code == 200
            await served.submit(args=["before"])
            cap_at_current_size(store)
            caplog.set_level(logging.WARNING)
            big = {"handler": "echo", "args": ["x" * 100_000]}
            refused = await served.post("/tasks", json=big)
            assert refused.status_code == 503, refused.text
            health = await served.http.get("/health")
            assert health.status_code == 503, health.text
            status = health.json()["status"]
            assert status.startswith("unavailable: ") and "write" in status, status
            assert not any(word in status.lower() for word in RAW), status
            assert "database or disk is full" in caplog.text, "the details are in the log"
            cap_at_current_size(store, cap=False)
            assert (await served.post("/tasks", json=big)).status_code == 201
            assert (await served.http.get("/health")).json()["status"] == "ok"
    finally:
        store.close()


async def test_a_store_that_cannot_be_read_is_503_without_its_error_text(
    served: Served, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("PostgreSQL error: password authentication failed for user conveyor")

    monkeypatch.setattr(served.engine, "list_tasks", broken)
    caplog.set_level(logging.WARNING)
    health = await served.http.get("/health")
    assert health.status_code == 503
    status = health.json()["status"]
    assert status.startswith("unavailable: "), status
    assert "password" not in status and "PostgreSQL" not in status, status
    assert "password authentication failed" in caplog.text
