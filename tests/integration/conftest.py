"""Fixtures for the HTTP server tests (`test_server_*.py`).

The server runs in-process: a real Engine on a temporary SQLite file, the app with its lifespan
(so timers run), and an httpx client over ASGITransport, so no port is opened.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio import to_thread
from fastapi import FastAPI

from conveyor.api.schemas import API_PREFIX
from conveyor.engine import Engine, EngineSettings
from conveyor.server import ServerSettings, create_app
from conveyor.store.sqlite import SQLiteStore

SERVER_SETTINGS = ServerSettings(timer_interval_s=0.05)


@dataclass
class Served:
    """A running app and a client for it; paths are relative to /api/v1 unless they say root."""

    engine: Engine
    app: FastAPI
    http: httpx.AsyncClient

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(API_PREFIX + path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(API_PREFIX + path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.delete(API_PREFIX + path, **kwargs)

    async def submit(self, **spec: Any) -> dict[str, Any]:
        response = await self.post("/tasks", json={"handler": "sha256", **spec})
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    async def register(self, **fields: Any) -> str:
        body = {"name": "w", "host": "test-host", "pid": 1, "concurrency": 4, **fields}
        response = await self.post("/workers", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    async def lease(self, worker_id: str, **body: Any) -> list[dict[str, Any]]:
        response = await self.post(f"/workers/{worker_id}/lease", json=body)
        assert response.status_code == 200, response.text
        return response.json()["tasks"]  # type: ignore[no-any-return]


@asynccontextmanager
async def serve(
    engine: Engine,
    settings: ServerSettings = SERVER_SETTINGS,
    *,
    raise_app_exceptions: bool = True,
) -> AsyncIterator[Served]:
    app = create_app(engine, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.test") as http:
            yield Served(engine, app, http)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engines on temporary SQLite files, closed after the test."""
    stores: list[SQLiteStore] = []

    def make(settings: EngineSettings | None = None) -> Engine:
        store = SQLiteStore(tmp_path / f"server-{len(stores)}.db")
        stores.append(store)
        return Engine(store, settings=settings)

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def server_engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
async def served(server_engine: Engine, anyio_backend: str) -> AsyncIterator[Served]:
    async with serve(server_engine) as s:
        yield s


class Signal:
    """Wraps a (sync) engine method to report, from its worker thread, that a call returned."""

    def __init__(self, method: Callable[..., Any], when: Callable[[Any], bool] = bool) -> None:
        self.method = method
        self.when = when
        self.event = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.method(*args, **kwargs)
        if self.when(result):
            self.event.set()
        return result

    async def wait(self, timeout_s: float = 5.0) -> None:
        if not await to_thread.run_sync(self.event.wait, timeout_s):
            raise AssertionError(f"{self.method.__name__} did not return as expected in time")
