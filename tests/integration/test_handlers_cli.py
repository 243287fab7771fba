"""`--allow-network` reaches the handler policy of every way to run a worker: `conveyor worker`,
`conveyor run` (embedded) and, through their options, `conveyor server --workers N` and
`conveyor worker --processes N`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conveyor.cli import run as run_module
from conveyor.cli import worker as worker_module
from conveyor.cli.main import cli
from conveyor.handlers import HandlerPolicy


class Captured:
    """Stands in for Worker or Scheduler: keeps the policy it was given, runs nothing."""

    policies: list[HandlerPolicy] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        config = kwargs.get("policy") or (args[0].policy if args else None)
        Captured.policies.append(config)

    def run(self, **kwargs: Any) -> int:
        return 0


@pytest.fixture(autouse=True)
def fresh() -> None:
    Captured.policies = []


def test_the_worker_takes_networks_and_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "Worker", Captured)
    monkeypatch.delenv("CONVEYOR_CONFIG", raising=False)
    argv = ["worker", "--allow-network", "10.0.0.0/8", "--allow-network", "db.internal"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert [p.allow_networks for p in Captured.policies] == [("10.0.0.0/8", "db.internal")]


def test_the_worker_reads_them_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "Worker", Captured)
    monkeypatch.setenv("CONVEYOR_WORKER_ALLOW_NETWORK", "127.0.0.1 fd00::/8")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0, result.output
    assert [p.allow_networks for p in Captured.policies] == [("127.0.0.1", "fd00::/8")]


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "http://x"])
def test_a_bad_entry_is_a_usage_error(entry: str) -> None:
    result = CliRunner().invoke(cli, ["worker", "--allow-network", entry])
    assert result.exit_code == 2
    assert "--allow-network" in result.output and "invalid" in result.output


def test_run_embedded_takes_them_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("tasks:\n  - {name: a, handler: echo, args: [1]}\n")
    policies: list[HandlerPolicy] = []
    real = run_module.Scheduler

    def scheduler(*args: Any, **kwargs: Any) -> Any:
        policies.append(kwargs["policy"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "Scheduler", scheduler)
    argv = ["run", str(job), "--db", str(tmp_path / "r.db"), "--json",
            "--allow-network", "127.0.0.1"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert [p.allow_networks for p in policies] == [("127.0.0.1",)]
