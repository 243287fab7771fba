"""Errors: 422 naming the field, 404, 409, 413, 503 with Retry-After, 405 with the right Allow,
and never a 500 for anything a client sends."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor.engine import Engine
from conveyor.errors import StoreBusyError, StoreError
from conveyor.server import ServerSettings
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio


def field_errors(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in body["detail"]]


@pytest.mark.parametrize(
    ("spec", "loc"),
    [
        ({"handler": "sha256", "priority": "high"}, ("body", "priority")),
        ({"handler": "sha256", "priority": True}, ("body", "priority")),
        ({"handler": "sha256", "priority": 1.5}, ("body", "priority")),
        ({"handler": "sha256", "max_retries": True}, ("body", "max_retries")),
        ({"handler": "sha256", "timeout_s": False}, ("body", "timeout_s")),
        ({"handler": "sha256", "prio": 1}, ("body", "prio")),
        ({"handler": "not a handler"}, ("body", "handler")),
        ({"handler": "sha256", "queue": "no spaces"}, ("body", "queue")),
        (
            {"handler": "sha256", "run_at": "2030-01-01T00:00:00Z", "delay_s": 1},
            ("body", "delay_s"),
        ),
        ({}, ("body", "handler")),
    ],
)
async def test_a_bad_task_spec_is_422_naming_the_field(
    served: Served, spec: dict[str, Any], loc: tuple[str, ...]
) -> None:
    response = await served.post("/tasks", json=spec)
    assert response.status_code == 422, response.text
    # Union fields (int | float) add the variant tried after the field: ("body", "timeout_s", "int").
    assert any(found[: len(loc)] == loc for found in field_errors(response.json()))


async def test_malformed_json_is_422(served: Served) -> None:
    for body in (b'{"handler": ', b"\xff\xfe\x00", b"[" * 5000, b"NaN]"):
        response = await served.post(
            "/tasks", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (body[:10], response.text)
        assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_worker_fields_too_large_for_the_store_are_422(served: Served) -> None:
    for fields, loc in [
        ({"pid": 2**70}, ("body", "pid")),
        ({"resources": {"gpu": 10**400}}, ("body", "resources", "gpu")),
    ]:
        body = {"name": "w", "host": "h", "pid": 1, "concurrency": 1, **fields}
        response = await served.post("/workers", json=body)
        assert response.status_code == 422, response.text
        assert any(found[: len(loc)] == loc for found in field_errors(response.json()))


async def test_booleans_do_not_pass_as_integers_for_workers(served: Served) -> None:
    register = await served.post(
        "/workers", json={"name": "w", "host": "h", "pid": True, "concurrency": 1}
    )
    assert ("body", "pid") in field_errors(register.json())
    worker = await served.register()
    lease = await served.post(f"/workers/{worker}/lease", json={"max": True})
    assert lease.status_code == 422
    assert ("body", "max") in field_errors(lease.json())


async def test_integers_do_not_pass_as_booleans(served: Served) -> None:
    """The schema says boolean: 0 and 1 are refused, not read as false and true (found by
    schemathesis' positive and negative data checks in a long run)."""
    capabilities = {"shell": False, "files": 0, "handlers": [], "modules": [], "networks": []}
    register = await served.post(
        "/workers",
        json={"name": "w", "host": "h", "pid": 1, "concurrency": 1, "capabilities": capabilities},
    )
    assert register.status_code == 422, register.text
    assert ("body", "capabilities", "files") in field_errors(register.json())
    bulk = await served.post(
        "/tasks/bulk", json={"action": "retry", "filter": {"state": ["failed"]}, "dry_run": 0}
    )
    assert bulk.status_code == 422, bulk.text
    assert ("body", "dry_run") in field_errors(bulk.json())


async def test_a_dependency_cycle_in_a_batch_is_422_on_depends_on(served: Served) -> None:
    response = await served.post(
        "/tasks/batch",
        json={
            "tasks": [
                {"handler": "sha256", "name": "a", "depends_on": ["b"]},
                {"handler": "sha256", "name": "b", "depends_on": ["a"]},
            ]
        },
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "depends_on"]
    assert error["type"] == "value_error"
    assert "cycle" in error["msg"]
    assert (await served.get("/tasks")).json()["tasks"] == []  # nothing of the batch stored


async def test_an_unknown_dependency_is_422_on_depends_on(served: Served) -> None:
    response = await served.post("/tasks", json={"handler": "sha256", "depends_on": ["nope"]})
    assert response.status_code == 422
    assert field_errors(response.json()) == [("body", "depends_on")]


async def test_unknown_ids_are_404(served: Served) -> None:
    for method, path, body in [
        ("GET", "/tasks/nope", None),
        ("GET", "/tasks/nope/result", None),
        ("POST", "/tasks/nope/cancel", None),
        ("POST", "/tasks/nope/retry", None),
        ("DELETE", "/tasks/nope", None),
        ("GET", "/workers/nope", None),
        ("DELETE", "/workers/nope", None),
        ("POST", "/workers/nope/heartbeat", {}),
        ("POST", "/workers/nope/lease", {}),
    ]:
        response = await served.http.request(method, "/api/v1" + path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "nope" in response.json()["detail"]


async def test_a_body_over_the_limit_is_413(make_engine: Any) -> None:
    async with serve(make_engine(), ServerSettings(max_body_bytes=1000)) as served:
        big = {"handler": "sha256", "args": ["x" * 2000]}
        declared = await served.post("/tasks", json=big)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed
            yield b'{"handler": "sha256", "args": ["'
            for _ in range(10):
                yield b"x" * 200
            yield b'"]}'

        streamed = await served.post(
            "/tasks", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert "limit" in streamed.json()["detail"]
        small = await served.post("/tasks", json={"handler": "sha256", "args": ["x" * 500]})
        assert small.status_code == 201
        assert (await served.get("/tasks")).json()["tasks"][0]["id"] == small.json()["id"]


async def test_a_busy_store_is_503_with_retry_after(served: Served, monkeypatch: Any) -> None:
    def busy(*args: object, **kwargs: object) -> None:
        raise StoreBusyError("database is locked", retry_after_s=2.5)

    monkeypatch.setattr(served.engine, "submit", busy)
    response = await served.post("/tasks", json={"handler": "sha256"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert "try again" in response.json()["detail"]


async def test_a_failing_store_is_503_and_health_says_so(served: Served, monkeypatch: Any) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(served.engine, "list_tasks", broken)
    listed = await served.get("/tasks")
    assert listed.status_code == 503
    assert listed.headers["retry-after"] == "1"
    health = await served.http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"].startswith("unavailable: the database cannot be read")
    assert "disk I/O error" not in health.text, "open to anyone: no database text"


async def test_an_unexpected_error_is_a_generic_500(
    server_engine: Engine, monkeypatch: Any
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(server_engine, "detail", bug)
    async with serve(server_engine, raise_app_exceptions=False) as served:
        response = await served.get("/tasks/x")
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json() == {"detail": "internal server error; see the server log"}


async def test_405_lists_every_method_the_path_takes(served: Served) -> None:
    response = await served.http.put("/api/v1/tasks/some-id")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"
    response = await served.http.patch("/api/v1/workers")
    assert response.headers["allow"] == "GET, POST"
    # /tasks/{task_id} matches /tasks/batch too, but the more specific path decides.
    response = await served.http.request("OPTIONS", "/api/v1/tasks/batch")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


GARBAGE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"123",
    b"{",
    b'{"unknown": true}',
    b'{"tasks": [{"handler": 1}], "reports": [{"token": "x"}], "max": -1, "wait_s": 1e999}',
    b'{"name": "' + b"\\ud800" + b'", "host": null, "pid": -1, "concurrency": 0}',
    b"\x00\xff\xfe",
]
GARBAGE_IDS = ["x", "%00", "..%2F..%2Fetc", "a" * 500, "1" * 30]
GARBAGE_QUERY = {
    "limit": "true",
    "cursor": "99999999999999999999999",
    "state": "bogus",
    "wait": "-1",
    "label": "nocolon",
}


async def test_garbage_to_every_endpoint_is_never_a_500(server_engine: Engine) -> None:
    async with serve(server_engine, raise_app_exceptions=False) as served:
        worker = await served.register()
        paths = served.app.openapi()["paths"]
        assert len(paths) >= 14
        sent = 0
        for path, operations in paths.items():
            for method, (body, task_or_worker_id) in itertools.product(
                operations, itertools.product(GARBAGE_BODIES, [*GARBAGE_IDS, worker])
            ):
                url = path.replace("{task_id}", task_or_worker_id).replace(
                    "{worker_id}", task_or_worker_id
                )
                response = await served.http.request(
                    method.upper(),
                    url,
                    content=body,
                    params=GARBAGE_QUERY,
                    headers={"content-type": "application/json"},
                )
                sent += 1
                assert response.status_code < 500, (method, url, body, response.text)
        assert sent > 500


EDGE_SPECS: list[dict[str, Any]] = [
    {"run_at": "0001-01-01T00:00:00+14:00"},  # before year 1 once in UTC
    {"run_at": "9999-12-31T23:59:59-14:00"},  # after year 9999 once in UTC
    {"run_at": "0001-01-01T00:00:00Z"},
    {"run_at": "9999-12-31T23:59:59Z"},
    {"run_at": "not a date"},
    {"args": [1e308, -1e308, 2**63, -(2**63) - 1, 10**30]},
    {"kwargs": {"\u0000": "\u0000"}, "key": "\u0000", "labels": {"": ""}},
    {"resources": {"cpu": 1e308}},
    {"resources": {"cpu": 10**400}},  # an int no float can hold
    {"timeout_s": 1e-300},
    {"delay_s": 366 * 86_400},
    {"priority": 10**30},
    {"name": "n" * 201},
    {"depends_on": ["x" * 10_000]},
    {"retry": {"backoff_s": 86_400, "backoff_max_s": 7 * 86_400, "jitter": 1}},
]


@pytest.mark.parametrize("extra", EDGE_SPECS)
async def test_specs_at_the_limits_are_accepted_or_refused_never_a_500(
    server_engine: Engine, extra: dict[str, Any]
) -> None:
    async with serve(server_engine, raise_app_exceptions=False) as served:
        response = await served.post("/tasks", json={"handler": "sha256", **extra})
        assert response.status_code in (201, 422), response.text
        if response.status_code == 201:
            read = await served.get(f"/tasks/{response.json()['id']}")
            assert read.status_code == 200
