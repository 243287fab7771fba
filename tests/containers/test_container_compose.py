"""compose.yaml's topology, run with podman-compose: PostgreSQL (the stand-in for postgres:16),
two servers on it, two worker services of two processes each and the GPU worker; a task through
each server, and one for the GPU worker.

The file runs as written, but for two things: the Conveyor services use the image this session
built (an override file sets `image:`, so podman-compose does not build it a second time, without
its health check), and the secrets and the host ports are the test's. podman-compose 1.0.3 does
not wait for `depends_on: condition: service_healthy` (it starts the services in order, a second
apart), ignores `healthcheck: disable` and `stop_grace_period`, and leaves networks behind. None
of it matters here: a server that finds no database exits and `restart: unless-stopped` starts it
again, workers retry until their server answers, and the clean-up removes everything by name.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from conveyor import Client, ConveyorError, TaskState
from conveyor.testing import free_port
from tests.containers.podman import ROOT, Podman, poll_until

pytestmark = pytest.mark.timeout(600)  # the first test may build the image

COMPOSE = ROOT / "compose.yaml"
SERVERS = ("server-a", "server-b")
WORKERS = ("worker-a", "worker-b", "gpu-worker")


@dataclass(frozen=True)
class Stack:
    project: str
    urls: dict[str, str]
    client_token: str

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"  # podman-compose's names


def conveyor_services() -> list[str]:
    """The services compose.yaml builds from the Dockerfile."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return [name for name, service in services.items() if "build" in service]


@pytest.fixture(scope="module")
def stack(podman: Podman, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = podman.name("compose")
    override = tmp_path_factory.mktemp("compose") / "compose.override.yaml"
    override.write_text(
        yaml.safe_dump({"services": {s: {"image": image} for s in conveyor_services()}})
    )
    tokens = {role: secrets.token_urlsafe(24) for role in ("admin", "worker", "client")}
    ports = {server: free_port() for server in SERVERS}
    env = {
        **{f"CONVEYOR_{role.upper()}_TOKEN": token for role, token in tokens.items()},
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "SERVER_A_PORT": str(ports["server-a"]),
        "SERVER_B_PORT": str(ports["server-b"]),
    }
    stack = Stack(project, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, tokens["client"])
    try:
        podman.compose(project, [COMPOSE, override], "up", "--detach", env=env)
        for server, url in stack.urls.items():
            with Client(url, token=stack.client_token) as client:
                poll_until(lambda: _healthy(client), 90, f"{server}'s /health",
                           lambda: podman.logs(project))  # fmt: skip
        yield stack
    finally:
        podman.remove(project)


def _healthy(client: Client) -> bool:
    try:
        client.health()
    except ConveyorError:  # refused, or 503 while its database is not there yet
        return False
    return True


def test_compose_runs_postgres_two_servers_and_their_workers_on_one_database(
    podman: Podman, stack: Stack
) -> None:
    for service in ("postgres", *SERVERS, *WORKERS):
        assert podman.inspect(stack.container(service), "{{.State.Status}}") == "running", service
    # worker-a and worker-b supervise two processes each, named after the container's hostname;
    # compose.yaml names the GPU worker.
    hosts = [podman.inspect(stack.container(s), "{{.Config.Hostname}}") for s in WORKERS[:2]]
    expected = sorted([*(f"{host}-{n}" for host in hosts for n in (1, 2)), "gpu-worker"])
    seen: dict[str, list[str]] = {}
    with (
        Client(stack.urls["server-a"], token=stack.client_token) as a,
        Client(stack.urls["server-b"], token=stack.client_token) as b,
    ):

        def all_registered() -> bool:
            # Each server sees every worker, its own and the other's: one database behind both.
            for server, client in (("server-a", a), ("server-b", b)):
                seen[server] = sorted(w.name for w in client.workers() if w.state == "alive")
            return all(names == expected for names in seen.values())

        poll_until(all_registered, 90, f"workers {expected} on both servers (seen: {seen})",
                   lambda: podman.logs(stack.project), every_s=0.5)  # fmt: skip


@pytest.mark.parametrize("server", SERVERS)
def test_a_task_submitted_through_each_server_runs_and_both_servers_see_it(
    podman: Podman, stack: Stack, server: str
) -> None:
    [other] = [s for s in SERVERS if s != server]
    text = f"through {server} {secrets.token_hex(4)}"
    with (
        Client(stack.urls[server], token=stack.client_token) as client,
        Client(stack.urls[other], token=stack.client_token) as other_client,
    ):
        submitted = client.submit("sha256", text, timeout_s=30)
        result = client.result(submitted.id, timeout_s=120)
        assert result.state is TaskState.SUCCEEDED, f"{result}\n{podman.logs(stack.project)}"
        assert result.result == hashlib.sha256(text.encode()).hexdigest()
        assert other_client.get(submitted.id).result == result.result


def test_a_gpu_task_runs_on_the_gpu_worker(podman: Podman, stack: Stack) -> None:
    # Submitted to server-b, whose own workers have no GPU: the GPU worker, on server-a, leases
    # it from the database they share.
    with Client(stack.urls["server-b"], token=stack.client_token) as client:
        submitted = client.submit("sha256", "gpu", queue="gpu", resources={"gpu": 1}, timeout_s=30)
        result = client.result(submitted.id, timeout_s=120)
        assert result.state is TaskState.SUCCEEDED, f"{result}\n{podman.logs(stack.project)}"
        [attempt] = client.get(submitted.id).attempt_log
        names = {w.id: w.name for w in client.workers()}
    assert names[attempt.worker_id or ""] == "gpu-worker"
