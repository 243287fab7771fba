"""Each worker's calls are bound to its own registration: the worker role's shared token and a
worker id (listed to every client) are not enough to heartbeat, lease, report or deregister as
that worker; and a worker leases only from the queues it registered for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor.api.schemas import WORKER_SECRET_HEADER
from conveyor.engine import Engine
from conveyor.server import ServerSettings
from conveyor.server.auth import Tokens, parse_tokens_variable
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio

CLIENT = "client-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdefgh"


def bearer(token: str, secret: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if secret is not None:
        headers[WORKER_SECRET_HEADER] = secret
    return headers


@pytest.fixture
async def guarded(server_engine: Engine, anyio_backend: str) -> AsyncIterator[Served]:
    tokens = Tokens(parse_tokens_variable(f"client:{CLIENT},worker:{WORKER},admin:{ADMIN}", "test"))
    async with serve(server_engine, ServerSettings(timer_interval_s=0.05, tokens=tokens)) as s:
        yield s


async def register(s: Served, **fields: Any) -> tuple[str, str]:
    body = {"name": "w", "host": "h", "pid": 1, "concurrency": 1, **fields}
    answer = await s.http.post("/api/v1/workers", json=body, headers=bearer(WORKER))
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["secret"]


async def test_a_worker_token_cannot_act_for_another_worker(guarded: Served) -> None:
    http = guarded.http
    task = await http.post("/api/v1/tasks", json={"handler": "sha256"}, headers=bearer(CLIENT))
    victim, victim_secret = await register(guarded, name="victim")
    _, own_secret = await register(guarded, name="attacker")
    assert victim_secret and own_secret != victim_secret
    lease = f"/api/v1/workers/{victim}/lease"
    leased = await http.post(lease, json={"max": 1}, headers=bearer(WORKER, victim_secret))
    assert leased.status_code == 200 and len(leased.json()["tasks"]) == 1

    forged = {"reports": [{"task_id": task.json()["id"], "token": 1, "outcome": "succeeded"}]}
    for secret in (None, "", own_secret, victim_secret[:-1] + "x"):
        for method, path, body in (
            ("POST", f"/api/v1/workers/{victim}/report", forged),
            ("POST", lease, {"max": 1}),
            ("POST", f"/api/v1/workers/{victim}/heartbeat", {}),
            ("DELETE", f"/api/v1/workers/{victim}", None),
        ):
            answer = await http.request(method, path, json=body, headers=bearer(WORKER, secret))
            assert answer.status_code == 403, (secret, method, path, answer.text)
            assert WORKER_SECRET_HEADER in answer.json()["detail"]
    still = await http.get(f"/api/v1/tasks/{task.json()['id']}", headers=bearer(CLIENT))
    assert still.json()["state"] == "running", "the forged report changed nothing"

    # The worker itself, with its secret, reports and deregisters; an admin needs none.
    path = f"/api/v1/workers/{victim}/report"
    ok = await http.post(path, json=forged, headers=bearer(WORKER, victim_secret))
    assert ok.status_code == 200 and ok.json()["acks"][0]["accepted"] is True
    other, _ = await register(guarded, name="other")
    assert (
        await http.delete(f"/api/v1/workers/{victim}", headers=bearer(WORKER, victim_secret))
    ).status_code == 204
    assert (await http.delete(f"/api/v1/workers/{other}", headers=bearer(ADMIN))).status_code == 204


async def test_a_worker_leases_only_from_the_queues_it_registered_for(guarded: Served) -> None:
    http = guarded.http
    task = await http.post(
        "/api/v1/tasks", json={"handler": "sha256", "queue": "payments"}, headers=bearer(CLIENT)
    )
    worker, secret = await register(guarded, queues=["reports"])
    answer = await http.post(
        f"/api/v1/workers/{worker}/lease",
        json={"max": 1, "queues": ["payments"]},
        headers=bearer(WORKER, secret),
    )
    assert answer.status_code == 409, answer.text
    assert "payments" in answer.text and "registered" in answer.text
    still = await http.get(f"/api/v1/tasks/{task.json()['id']}", headers=bearer(CLIENT))
    assert still.json()["state"] == "queued"
