"""The image as the Dockerfile's header says to run it: a server container with tokens, a worker
container that reaches it over a network of their own, and a task submitted from the host with
the SDK. Then the image's health check, and the user its processes run as."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from conveyor import Client, TaskState
from conveyor.testing import free_port
from tests.containers.podman import Podman, poll_until

pytestmark = pytest.mark.timeout(600)  # the first test builds the image

UID = 10001
WORKER_NAME = "container-worker"


@dataclass(frozen=True)
class Deployment:
    url: str
    client_token: str
    server: str
    worker: str


@pytest.fixture(scope="module")
def deployment(podman: Podman, image: str) -> Iterator[Deployment]:
    prefix = podman.name("single")
    network, server, worker = f"{prefix}-net", f"{prefix}-server", f"{prefix}-worker"
    tokens = {role: secrets.token_urlsafe(24) for role in ("admin", "worker", "client")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Tokens reach the containers through the environment (`-e NAME` copies it), not argv.
    env = {
        "CONVEYOR_TOKENS": ",".join(f"{role}:{token}" for role, token in tokens.items()),
        "CONVEYOR_TOKEN": tokens["worker"],
    }
    try:
        podman("network", "create", network)
        # The image's own defaults: 0.0.0.0:8000, SQLite in the /data volume.
        podman("run", "--detach", "--name", server, "--network", network,
               "--network-alias", "server", "--publish", f"127.0.0.1:{port}:8000",
               "--env", "CONVEYOR_TOKENS", image, env=env)  # fmt: skip
        # A worker serves no HTTP: like compose.yaml, it turns the image's health check off.
        podman("run", "--detach", "--name", worker, "--network", network, "--no-healthcheck",
               "--env", "CONVEYOR_URL=http://server:8000", "--env", "CONVEYOR_TOKEN", image,
               "conveyor", "worker", "--name", WORKER_NAME, "--concurrency", "2", env=env)  # fmt: skip
        poll_until(lambda: _serves(url), 60, "the server container's /health",
                   lambda: podman.logs(prefix))  # fmt: skip
        yield Deployment(url, tokens["client"], server, worker)
    finally:
        podman.remove(prefix)


def _serves(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_task_submitted_from_the_host_runs_in_the_worker_container(
    podman: Podman, deployment: Deployment
) -> None:
    text = f"through a container {secrets.token_hex(4)}"
    with Client(deployment.url, token=deployment.client_token) as client:
        submitted = client.submit("sha256", text, timeout_s=30)
        # Waits on the server for the end: the worker container starts, registers and runs it.
        result = client.result(submitted.id, timeout_s=120)
        assert result.state is TaskState.SUCCEEDED, f"{result}\n{podman.logs(podman.run)}"
        assert result.result == hashlib.sha256(text.encode()).hexdigest()
        [attempt] = client.get(submitted.id).attempt_log
        workers = {w.id: w for w in client.workers()}
    worker = workers[attempt.worker_id or ""]
    assert worker.name == WORKER_NAME
    assert worker.host == podman.inspect(deployment.worker, "{{.Config.Hostname}}")


def test_the_image_keeps_its_health_check_and_it_passes_while_the_server_serves(
    podman: Podman, image: str, deployment: Deployment
) -> None:
    check = json.loads(podman.inspect(image, "{{json .Config.Healthcheck}}", kind="image"))
    assert check, "the image has no HEALTHCHECK: built in the OCI format, which drops it?"
    assert check["Test"][0] == "CMD" and "/health" in check["Test"][-1]
    # No systemd here to run it on its interval: run it once, as the interval would.
    ran = podman("healthcheck", "run", deployment.server, check=False)
    assert (ran.returncode, ran.stdout.strip()) == (0, ""), ran.stdout + ran.stderr
    assert podman.inspect(deployment.server, "{{.State.Health.Status}}") == "healthy"


def test_the_health_check_fails_where_no_server_serves(podman: Podman, image: str) -> None:
    container = podman.name("no-server")
    try:
        podman("run", "--detach", "--name", container, image, "sleep", "600")
        ran = podman("healthcheck", "run", container, check=False)
        assert (ran.returncode, ran.stdout.strip()) == (1, "unhealthy"), ran.stdout + ran.stderr
    finally:
        podman.remove(container)


def test_the_server_and_the_worker_run_as_the_unprivileged_user(
    podman: Podman, image: str, deployment: Deployment
) -> None:
    assert podman.inspect(image, "{{.Config.User}}", kind="image") == f"{UID}:{UID}"
    for container in (deployment.server, deployment.worker):
        status = podman("exec", container, "cat", "/proc/1/status").stdout
        ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
        assert ids["Uid"] == [str(UID)] * 4, (container, ids["Uid"])  # real, effective, saved, fs
        assert ids["Gid"] == [str(UID)] * 4, (container, ids["Gid"])
        cmdline = podman("exec", container, "cat", "/proc/1/cmdline").stdout
        assert "conveyor" in cmdline, cmdline
    # Its database is its own, in the volume; the installed environment belongs to root, so
    # neither the server nor a task can change the code that runs them.
    owner = podman("exec", deployment.server, "stat", "--format", "%u", "/data/conveyor.db")
    assert owner.stdout.strip() == str(UID)
    probe = "import os; print(os.access('/opt/conveyor/lib', os.W_OK), os.access('/data', os.W_OK))"
    writable = podman("exec", deployment.server, "python", "-c", probe).stdout.split()
    assert writable == ["False", "True"]
