"""`--allow-network` reaches the handler policy of every way to run a worker: `conveyor worker`,
`conveyor run` (embedded) and, through their options, `conveyor server --workers N` and
`conveyor worker --processes N`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner

from conveyor.cli import run as run_module
from conveyor.cli import worker as worker_module
from conveyor.cli.main import cli
from conveyor.handlers import HandlerPolicy
from conveyor.worker import WorkerConfig


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[WorkerConfig]:
    """The WorkerConfig each `conveyor worker` builds; the worker itself does not run."""
    made: list[WorkerConfig] = []

    def config(*args: Any, **kwargs: Any) -> WorkerConfig:
        made.append(WorkerConfig(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(worker_module, "WorkerConfig", config)
    worker = mock.MagicMock()
    worker.return_value.run.return_value = 0
    monkeypatch.setattr(worker_module, "Worker", worker)
    monkeypatch.delenv("CONVEYOR_CONFIG", raising=False)
    return made


def test_the_worker_takes_networks_and_hosts(configs: list[WorkerConfig]) -> None:
    argv = ["worker", "--allow-network", "10.0.0.0/8", "--allow-network", "db.internal"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert [c.policy.allow_networks for c in configs] == [("10.0.0.0/8", "db.internal")]


def test_the_worker_reads_them_from_the_environment(
    configs: list[WorkerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_WORKER_ALLOW_NETWORK", "127.0.0.1 fd00::/8")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0, result.output
    assert [c.policy.allow_networks for c in configs] == [("127.0.0.1", "fd00::/8")]


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
