"""Bearer tokens with roles: the configuration, the comparison, who may call what (every route,
every role), the OpenAPI declaration, and real processes (server, worker, CLI) using tokens."""

from __future__ import annotations

import hmac
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from conveyor.api.schemas import WORKER_SECRET_HEADER
from conveyor.cli.main import cli
from conveyor.engine import Engine
from conveyor.server import ServerSettings
from conveyor.server import auth as auth_module
from conveyor.server.auth import (
    Role,
    TokenConfigError,
    TokenEntry,
    Tokens,
    parse_tokens_file,
    parse_tokens_variable,
    token_for,
)
from conveyor.testing import Cluster, free_port, wait_until
from tests.integration.conftest import Served, serve

CLIENT = "client-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdefgh"
TOKENS = {"client": CLIENT, "worker": WORKER, "admin": ADMIN}
CONVEYOR_TOKENS = ",".join(f"{role}:{token}" for role, token in TOKENS.items())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- configuration ----------------------------------------------------------------------------


def test_a_tokens_file_has_one_role_and_token_per_line_with_comments() -> None:
    entries = parse_tokens_file(
        f"# ops\nadmin:{ADMIN}\n\n  worker : {WORKER}  # the fleet\nCLIENT:{CLIENT}\n", "t.txt"
    )
    assert [(e.role, e.token) for e in entries] == [
        (Role.ADMIN, ADMIN),
        (Role.WORKER, WORKER),
        (Role.CLIENT, CLIENT),
    ]
    assert ADMIN not in repr(entries)  # a token never shows in a repr (logs, tracebacks)


def test_the_variable_holds_comma_separated_items_and_a_role_may_have_several_tokens() -> None:
    entries = parse_tokens_variable(f"client:{CLIENT}, client:{CLIENT}x,,admin:{ADMIN}", "ENV")
    assert [e.role for e in entries] == [Role.CLIENT, Role.CLIENT, Role.ADMIN]
    assert token_for(entries, Role.WORKER, Role.ADMIN) == ADMIN
    assert token_for(entries, Role.CLIENT) == CLIENT
    assert token_for(entries, Role.WORKER) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("admin", "t.txt line 1: expected ROLE:TOKEN"),
        (f"\nroot:{ADMIN}", "t.txt line 2: 'root' is not a role (client, worker, admin)"),
        ("admin:short-secret", "the admin token has 12 characters; at least 16"),
        ("admin:" + "x" * 15, "at least 16 are required"),
        ("admin:has space inside it ok", "may only hold letters, digits"),
        ('admin:quote"d-0123456789abcdef', "may only hold letters, digits"),
        (
            f"admin:{ADMIN}\nclient:{ADMIN}",
            "line 2: the same token is listed before (t.txt line 1)",
        ),
    ],
)
def test_a_malformed_tokens_file_is_refused_with_the_place_and_never_the_token(
    text: str, message: str
) -> None:
    with pytest.raises(TokenConfigError) as caught:
        parse_tokens_file(text, "t.txt")
    assert message in str(caught.value)
    for secret in (ADMIN, "short-secret", "has space inside it ok"):
        assert secret not in str(caught.value)


def test_the_server_command_refuses_a_bad_tokens_file_clearly(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("worker:tooshort\n")
    result = CliRunner().invoke(
        cli, ["server", "--db", str(tmp_path / "x.db"), "--tokens-file", str(tokens)]
    )
    assert result.exit_code == 2
    assert f"{tokens} line 1: the worker token has 8 characters" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened

    tokens.write_text("# nothing yet\n")
    result = CliRunner().invoke(
        cli, ["server", "--db", str(tmp_path / "x.db"), "--tokens-file", str(tokens)]
    )
    assert result.exit_code == 2
    assert "holds no token" in result.output

    result = CliRunner().invoke(
        cli, ["server", "--db", str(tmp_path / "x.db")], env={"CONVEYOR_TOKENS": "admin=abc"}
    )
    assert result.exit_code == 2
    assert "CONVEYOR_TOKENS item 1: expected ROLE:TOKEN" in result.output


# ---- the comparison ---------------------------------------------------------------------------


def test_tokens_are_compared_in_constant_time_with_every_configured_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = Tokens(
        [
            TokenEntry(Role.ADMIN, ADMIN),
            TokenEntry(Role.WORKER, WORKER),
            TokenEntry(Role.CLIENT, CLIENT),
        ]
    )
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", compare_digest)
    for presented, role in [
        (ADMIN.encode(), Role.ADMIN),  # a match on the first token: still compared with all
        (CLIENT.encode(), Role.CLIENT),
        (b"x", None),
        (b"y" * 5000, None),
    ]:
        calls.clear()
        assert tokens.role_of(presented) is role
        assert len(calls) == 3
        # Fixed-length digests on both sides: the presented token's length is not compared.
        assert all(len(a) == len(b) == 32 for a, b in calls)
        assert all(presented not in (a, b) for a, b in calls)


# ---- who may call what ------------------------------------------------------------------------

OPEN = "open"
CLIENTS = "client"
WORKERS = "worker"
ADMINS = "admin"
ANY_TOKEN = "any"
MAY = {
    OPEN: {None, "bad", "client", "worker", "admin"},
    CLIENTS: {"client", "admin"},
    WORKERS: {"worker", "admin"},
    ADMINS: {"admin"},
    ANY_TOKEN: {"client", "worker", "admin"},
}

# (method, path, body, who may call it); `{task}` and `{worker}` are real ids at run time.
ROUTES: list[tuple[str, str, Any, str]] = [
    # tasks
    ("POST", "/api/v1/tasks", {"handler": "sha256"}, CLIENTS),
    ("POST", "/api/v1/tasks/batch", {"tasks": [{"handler": "sha256"}]}, CLIENTS),
    ("GET", "/api/v1/tasks", None, CLIENTS),
    ("GET", "/api/v1/tasks/{task}", None, CLIENTS),
    ("GET", "/api/v1/tasks/{task}/result", None, CLIENTS),
    ("POST", "/api/v1/tasks/results", {"ids": ["{task}"]}, CLIENTS),
    ("POST", "/api/v1/tasks/{task}/cancel", None, CLIENTS),
    ("POST", "/api/v1/tasks/{task}/retry", None, CLIENTS),
    ("DELETE", "/api/v1/tasks/{task}", None, CLIENTS),
    ("GET", "/api/v1/tasks/{task}/why", None, CLIENTS),
    ("POST", "/api/v1/tasks/bulk", {"action": "retry", "filter": {"queue": "q"}}, CLIENTS),
    ("GET", "/api/v1/bulk/{bulk_id}", None, CLIENTS),
    # workers, worker side
    ("POST", "/api/v1/workers", {"name": "w", "host": "h", "pid": 1, "concurrency": 1}, WORKERS),
    ("POST", "/api/v1/workers/{worker}/heartbeat", {}, WORKERS),
    ("POST", "/api/v1/workers/{worker}/lease", {"max": 1}, WORKERS),
    (
        "POST",
        "/api/v1/workers/{worker}/report",
        {"reports": [{"task_id": "nope", "token": 1, "outcome": "succeeded"}]},
        WORKERS,
    ),
    # workers, client side, and deregistering
    ("GET", "/api/v1/workers", None, CLIENTS),
    ("GET", "/api/v1/workers/{worker}", None, CLIENTS),
    ("DELETE", "/api/v1/workers/{worker}", None, WORKERS),  # admin, or the worker itself
    # schedules
    (
        "POST",
        "/api/v1/schedules",
        {"name": "nightly", "cron": "0 3 * * *", "task": {"handler": "sha256"}},
        CLIENTS,
    ),
    ("GET", "/api/v1/schedules", None, CLIENTS),
    ("GET", "/api/v1/schedules/{name}", None, CLIENTS),
    ("DELETE", "/api/v1/schedules/{name}", None, CLIENTS),
    # the operator's controls
    ("POST", "/api/v1/queues/{queue}/pause", None, ADMINS),
    ("POST", "/api/v1/queues/{queue}/resume", None, ADMINS),
    ("POST", "/api/v1/schedules/{name}/pause", None, ADMINS),
    ("POST", "/api/v1/schedules/{name}/resume", None, ADMINS),
    ("POST", "/api/v1/pause", None, ADMINS),
    ("POST", "/api/v1/resume", None, ADMINS),
    ("GET", "/api/v1/pauses", None, CLIENTS),
    ("POST", "/api/v1/workers/drain", {"ids": ["{worker}"]}, ADMINS),
    ("POST", "/api/v1/workers/stop", {"ids": ["{worker}"]}, ADMINS),
    ("PUT", "/api/v1/limits/{limit}", {"concurrency": 2}, ADMINS),
    ("GET", "/api/v1/limits", None, CLIENTS),
    ("GET", "/api/v1/limits/{limit}", None, CLIENTS),
    ("DELETE", "/api/v1/limits/{limit}", None, ADMINS),
    # the system
    ("GET", "/api/v1/status", None, CLIENTS),
    ("GET", "/api/v1/status/history", None, CLIENTS),
    ("GET", "/api/v1/monitor", None, CLIENTS),
    ("GET", "/metrics", None, CLIENTS),
    # the dashboard's views
    ("GET", "/api/v1/search/tasks?text=a", None, CLIENTS),
    ("GET", "/api/v1/tasks/{task}/graph", None, CLIENTS),
    ("GET", "/api/v1/workflows", None, CLIENTS),
    ("GET", "/api/v1/workflows/{task}", None, CLIENTS),
    ("GET", "/api/v1/failures", None, CLIENTS),
    # open: health for load balancers, the docs, the dashboard's page and assets
    ("GET", "/health", None, OPEN),
    ("GET", "/openapi.json", None, OPEN),
    ("GET", "/docs", None, OPEN),
    ("GET", "/docs/assets/swagger-ui.css", None, OPEN),
    ("GET", "/", None, OPEN),
    ("GET", "/dashboard/assets/app.css", None, OPEN),
    # no such route: a token is needed to learn even that (closed by default)
    ("GET", "/api/v1/nothing-here", None, ANY_TOKEN),
    # a method the path does not take: 405 for whoever may call the path
    ("PUT", "/api/v1/tasks", {}, CLIENTS),
]


@pytest.fixture
async def guarded(server_engine: Engine, anyio_backend: str) -> AsyncIterator[Served]:
    tokens = Tokens(parse_tokens_variable(CONVEYOR_TOKENS, "test"))
    async with serve(server_engine, ServerSettings(timer_interval_s=0.05, tokens=tokens)) as s:
        yield s


async def _ids(s: Served) -> dict[str, str]:
    """A fresh task and worker (some calls below cancel or remove them), and the worker's own
    secret, which a worker token needs to act for it (test_worker_secrets.py)."""
    task = await s.http.post("/api/v1/tasks", json={"handler": "sha256"}, headers=bearer(ADMIN))
    body = {"name": "w", "host": "h", "pid": 1, "concurrency": 1}
    worker = (await s.http.post("/api/v1/workers", json=body, headers=bearer(ADMIN))).json()
    return {"task": task.json()["id"], "worker": worker["id"], "name": "nightly",
            "secret": worker["secret"], "queue": "q", "bulk_id": "no-such-action", "limit": "db"}  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path", "body", "access"), ROUTES)
async def test_each_route_answers_each_role_as_its_access_says(
    guarded: Served, method: str, path: str, body: Any, access: str
) -> None:
    for who in (None, "bad", "client", "worker", "admin"):
        ids = await _ids(guarded)
        url = path.format(**ids)
        headers = {} if who is None else bearer(TOKENS.get(who, "not-a-token-of-this-server"))
        headers[WORKER_SECRET_HEADER] = ids["secret"]
        response = await guarded.http.request(method, url, json=body, headers=headers)
        if who in MAY[access]:
            assert response.status_code not in (401, 403), (who, method, url, response.text)
        elif who in (None, "bad"):
            assert response.status_code == 401, (who, method, url, response.text)
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith("Bearer ")
            assert ('error="invalid_token"' in challenge) is (who == "bad")
        else:
            assert response.status_code == 403, (who, method, url, response.text)
            assert f"a {who} token may not call {method}" in response.json()["detail"]


@pytest.mark.anyio
async def test_the_table_lists_every_operation_of_the_api(guarded: Served) -> None:
    schema = (await guarded.http.get("/openapi.json")).json()
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    listed = {
        (
            method,
            path.split("?")[0].replace("{task}", "{task_id}").replace("{worker}", "{worker_id}"),
        )
        for method, path, _, _ in ROUTES
    }
    assert operations <= listed, operations - listed


@pytest.mark.anyio
async def test_workers_cannot_submit_or_cancel_clients_cannot_lease_or_report_admins_deregister(
    guarded: Served,
) -> None:
    http = guarded.http
    refused = await http.post("/api/v1/tasks", json={"handler": "sha256"}, headers=bearer(WORKER))
    assert refused.status_code == 403
    task = (
        await http.post("/api/v1/tasks", json={"handler": "sha256"}, headers=bearer(CLIENT))
    ).json()
    assert (
        await http.post(f"/api/v1/tasks/{task['id']}/cancel", headers=bearer(WORKER))
    ).status_code == 403

    body = {"name": "w", "host": "h", "pid": 1, "concurrency": 1}
    registered = (await http.post("/api/v1/workers", json=body, headers=bearer(WORKER))).json()
    worker, own = registered["id"], {WORKER_SECRET_HEADER: registered["secret"]}
    lease = f"/api/v1/workers/{worker}/lease"
    assert (await http.post(lease, json={}, headers=bearer(CLIENT))).status_code == 403
    leased = (await http.post(lease, json={}, headers=bearer(WORKER) | own)).json()["tasks"]
    assert [a["task_id"] for a in leased] == [task["id"]]
    report = {
        "reports": [{"task_id": task["id"], "token": leased[0]["token"], "outcome": "succeeded"}]
    }
    path = f"/api/v1/workers/{worker}/report"
    assert (await http.post(path, json=report, headers=bearer(CLIENT))).status_code == 403
    assert (await http.post(path, json=report, headers=bearer(WORKER) | own)).status_code == 200

    # A client never deregisters a worker; a worker token only the worker whose secret it has.
    for headers in (bearer(CLIENT) | own, bearer(WORKER)):
        assert (await http.delete(f"/api/v1/workers/{worker}", headers=headers)).status_code == 403
    assert (
        await http.delete(f"/api/v1/workers/{worker}", headers=bearer(ADMIN))
    ).status_code == 204


@pytest.mark.anyio
async def test_a_request_without_a_token_is_refused_before_its_body_is_read(
    guarded: Served,
) -> None:
    huge = b"[" * 2_000_000  # over the body limit, and not JSON either
    response = await guarded.http.post(
        "/api/v1/tasks", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    basic = await guarded.http.get("/api/v1/tasks", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


@pytest.mark.anyio
async def test_refusals_are_logged_without_the_token(
    guarded: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="conveyor.server.auth")
    await guarded.http.get("/api/v1/tasks", headers=bearer("guess-0123456789abcdef"))
    await guarded.http.delete("/api/v1/workers/x", headers=bearer(CLIENT))
    assert [r.getMessage() for r in caplog.records] == [
        "refused GET /api/v1/tasks: an unknown bearer token",
        "refused DELETE /api/v1/workers/x: role client may not call this route",
    ]
    assert "guess-0123456789abcdef" not in caplog.text and CLIENT not in caplog.text


@pytest.mark.anyio
async def test_the_openapi_schema_declares_the_bearer_scheme_and_each_operations_roles(
    guarded: Served,
) -> None:
    schema = (await guarded.http.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    deregister = schema["paths"]["/api/v1/workers/{worker_id}"]["delete"]
    assert deregister["security"] == [{"bearer": []}]
    assert deregister["x-roles"] == ["admin", "worker"]
    assert {"401", "403"} <= deregister["responses"].keys()
    assert schema["paths"]["/api/v1/workers/{worker_id}/lease"]["post"]["x-roles"] == [
        "admin",
        "worker",
    ]
    assert "security" not in schema["paths"]["/health"]["get"]


@pytest.mark.anyio
async def test_without_tokens_the_api_is_open_and_its_schema_asks_for_none(served: Served) -> None:
    assert (await served.get("/tasks")).status_code == 200
    worker = await served.register()
    assert (await served.delete(f"/workers/{worker}")).status_code == 204
    schema = (await served.http.get("/openapi.json")).json()
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())


# ---- real processes ---------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, env={"CONVEYOR_TOKENS": CONVEYOR_TOKENS}, token=CLIENT)
    yield c
    c.stop()


def conveyor(
    *args: str, token: str | None, server: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CONVEYOR_URL": server, **env}
    environment.pop("CONVEYOR_TOKEN", None)
    if token is not None:
        environment["CONVEYOR_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_server_worker_and_cli_with_tokens_run_a_task_end_to_end(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_worker("w1", env={"CONVEYOR_TOKEN": WORKER})

    done = conveyor("submit", "sha256", "hello", "--wait", token=CLIENT, server=cluster.url)
    assert done.returncode == 0, done.stderr
    assert "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" in done.stdout

    refused = conveyor("submit", "sha256", "x", token=WORKER, server=cluster.url)
    assert refused.returncode != 0
    assert "HTTP 403" in refused.stderr and "a worker token may not call" in refused.stderr
    missing = conveyor("tasks", token=None, server=cluster.url)
    assert missing.returncode != 0 and "HTTP 401" in missing.stderr
    assert WORKER not in cluster.log("server0") and WORKER not in cluster.log("w1")


@pytest.mark.slow
def test_a_non_loopback_bind_with_tokens_needs_no_insecure_and_warns_without_tls(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{ADMIN}\n")
    tokens.chmod(0o600)
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--db", str(tmp_path / "x.db"),
             "--host", "0.0.0.0", "--port", str(port), "--tokens-file", str(tokens)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/health"), 30, "the server to answer")
        assert httpx.get(f"{url}/api/v1/tasks").status_code == 401
        assert httpx.get(f"{url}/api/v1/tasks", headers=bearer(ADMIN)).status_code == 200
    finally:
        server.kill()
        server.wait()
    output = (tmp_path / "server.log").read_text()
    assert "without TLS: tokens cross the network in clear text" in output
    assert "can be read by other users" not in output


def _answers(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=1, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    return cert, key


@pytest.mark.slow
def test_https_with_tokens_serves_the_sdk_cli_and_local_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "CONVEYOR_TOKENS": f"worker:{WORKER},client:{CLIENT}",
        "SSL_CERT_FILE": str(cert),  # how httpx (the SDK, CLI and workers) trusts it
    }
    env.pop("CONVEYOR_TOKEN", None)
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--db", str(tmp_path / "x.db"),
             "--port", str(port), "--workers", "1", "--ssl-certfile", str(cert),
             "--ssl-keyfile", str(key)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        wait_until(lambda: _answers(f"{url}/health", verify=trusted), 30, "HTTPS to answer")
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"{url}/health", timeout=5)

        done = conveyor(
            "submit", "sha256", "hello", "--wait", token=CLIENT, server=url,
            SSL_CERT_FILE=str(cert),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + (tmp_path / "server.log").read_text()
        assert "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" in done.stdout

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        from conveyor.client import Client

        with Client(url, token=CLIENT) as client:
            (worker,) = client.workers()
            assert worker.state == "alive"  # the local worker, over HTTPS with a worker token
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes()
            assert WORKER.encode() not in cmdline  # its token came in its environment
    finally:
        server.terminate()
        server.wait(30)
    assert "Conveyor server at https://127.0.0.1" in (tmp_path / "server.log").read_text()
