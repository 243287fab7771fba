"""Data the database refuses for good is a 422, on the fast lane and on the routes alike: a 503
would tell the client to send the same thing again, forever."""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from conveyor.errors import StoreRefusedError
from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio


def refused(*args: Any, **kwargs: Any) -> NoReturn:
    raise StoreRefusedError("PostgreSQL cannot store this data: value out of range")


async def test_refused_data_is_422_without_retry_after(served: Served, monkeypatch: Any) -> None:
    task = await served.submit()
    monkeypatch.setattr(served.engine, "submit_batch", refused)  # POST /tasks: the fast lane
    monkeypatch.setattr(served.engine, "cancel", refused)  # a FastAPI route
    for answer in (
        await served.post("/tasks", json={"handler": "sha256"}),
        await served.post(f"/tasks/{task['id']}/cancel"),
    ):
        assert answer.status_code == 422, answer.text
        assert "Retry-After" not in answer.headers
        assert "cannot store" in answer.json()["detail"]
