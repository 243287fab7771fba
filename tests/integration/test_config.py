"""Configuration: every option by flag, environment and config file, in one precedence
(flag > environment > config file > default), and `conveyor config` reporting it.

The real commands are invoked with their callbacks replaced by a recorder, so what is checked is
the value click hands the command, not a re-implementation of the rule.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from conveyor.cli.config import env_name, leaf_commands, option_key
from conveyor.cli.main import COMMANDS, cli


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONVEYOR_* variable of the machine running the tests leaks into these."""
    for name in list(os.environ):
        if name.startswith("CONVEYOR_") and not name.startswith("CONVEYOR_TEST_"):
            monkeypatch.delenv(name)


def command(*path: str) -> click.Command:
    ctx = click.Context(cli, info_name="conveyor")
    found: click.Command | None = cli
    for name in path:
        assert isinstance(found, click.Group)
        found = found.get_command(ctx, name)
    assert found is not None
    return found


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    """Replace the callbacks of server, worker and schedule add with one that records kwargs."""
    calls: dict[str, dict[str, Any]] = {}
    for path in (("server",), ("worker",), ("schedule", "add")):
        key = " ".join(path)

        def record(*args: Any, _key: str = key, **kwargs: Any) -> None:
            calls[_key] = kwargs

        monkeypatch.setattr(command(*path), "callback", record)
    yield calls


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("flag", "env", "in_file", "expected"),
    [
        (None, None, None, 8000),  # default
        (None, None, 8001, 8001),  # the file beats the default
        (None, "8002", 8001, 8002),  # the environment beats the file
        ("8003", "8002", 8001, 8003),  # the flag beats everything
        ("8003", None, 8001, 8003),
        ("8003", "8002", None, 8003),
    ],
)
def test_flag_beats_environment_beats_file_beats_default(
    tmp_path: Path,
    recorded: dict[str, dict[str, Any]],
    flag: str | None,
    env: str | None,
    in_file: int | None,
    expected: int,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[server]\nport = {in_file}\n" if in_file else "")
    args = ["--config", str(config), "server", *(["--port", flag] if flag else [])]
    result = invoke(args, env={"CONVEYOR_SERVER_PORT": env} if env else None)
    assert result.exit_code == 0, result.output
    assert recorded["server"]["port"] == expected


def test_the_same_rule_holds_for_a_shared_variable_and_a_subcommand(
    tmp_path: Path, recorded: dict[str, dict[str, Any]]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[worker]\nserver = "http://file:1"\nconcurrency = 3\n'
        '[schedule.add]\ntz = "Europe/Paris"\npriority = 4\n'
    )
    env = {"CONVEYOR_URL": "http://env:2", "CONVEYOR_SCHEDULE_ADD_PRIORITY": "7"}
    assert invoke(["--config", str(config), "worker"], env).exit_code == 0
    assert recorded["worker"]["server"] == "http://env:2"  # CONVEYOR_URL beats [worker] server
    assert recorded["worker"]["concurrency"] == 3
    result = invoke(["--config", str(config), "schedule", "add", "n", "* * * * *", "echo"], env)
    assert result.exit_code == 0, result.output
    assert recorded["schedule add"]["timezone"] == "Europe/Paris"
    assert recorded["schedule add"]["priority"] == 7


def test_file_values_take_the_shape_of_the_flag(
    tmp_path: Path, recorded: dict[str, dict[str, Any]]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[worker]\n"
        'queues = ["default", "images"]\n'
        "resources = {gpu = 1, memory_mb = 2048}\n"
        'allow_module = "myapp"\n'  # an underscore works too; one value for a repeatable option
        'allow = ["shell"]\n'
        "burst = true\n"
    )
    result = invoke(["--config", str(config), "worker"])
    assert result.exit_code == 0, result.output
    kwargs = recorded["worker"]
    assert kwargs["queues"] == ("default", "images")
    assert kwargs["resources"] == {"gpu": 1.0, "memory_mb": 2048.0}
    assert kwargs["allow_modules"] == ("myapp",)
    assert kwargs["allow"] == ("shell",)
    assert kwargs["burst"] is True


def test_environment_values_take_the_flags_text(recorded: dict[str, dict[str, Any]]) -> None:
    env = {
        "CONVEYOR_WORKER_QUEUES": "a,b",
        "CONVEYOR_WORKER_ALLOW_MODULE": "one two",  # a repeatable option: separated by spaces
        "CONVEYOR_WORKER_BURST": "true",
        "CONVEYOR_WORKER_RESOURCES": "gpu=2",
    }
    assert invoke(["worker"], env).exit_code == 0
    kwargs = recorded["worker"]
    assert kwargs["queues"] == ("a", "b")
    assert kwargs["allow_modules"] == ("one", "two")
    assert kwargs["burst"] is True
    assert kwargs["resources"] == {"gpu": 2.0}


def test_conveyor_toml_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, dict[str, Any]]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conveyor.toml").write_text("[server]\nport = 8100\n")
    assert invoke(["server"]).exit_code == 0
    assert recorded["server"]["port"] == 8100
    (tmp_path / "other.toml").write_text("[server]\nport = 8200\n")
    assert invoke(["server"], env={"CONVEYOR_CONFIG": "other.toml"}).exit_code == 0
    assert recorded["server"]["port"] == 8200  # CONVEYOR_CONFIG names another file


def test_verbose_comes_from_the_file_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    levels: list[int] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    config = tmp_path / "c.toml"
    config.write_text("verbose = 2\n")
    for args in (["--config", str(config)], ["--config", str(config), "-v"], []):
        assert invoke([*args, "config", "status", "--json"]).exit_code == 0
    assert levels == [logging.DEBUG, logging.INFO, logging.WARNING]


SERVER = ["server"]
SCHEDULE_ADD = ["schedule", "add", "n", "* * * * *", "echo"]


@pytest.mark.parametrize(
    ("text", "message", "checked_by"),
    [
        ("[server]\nprot = 8001\n", "[server] has no option 'prot' (known: ", [SERVER]),
        ('[server]\nport = "eighty"\n', "[server] port: 'eighty' is not a valid integer", [SERVER]),
        ("[schedule.add]\nzone = 1\n", "[schedule.add] has no option 'zone'", [SCHEDULE_ADD]),
        ("[sever]\nport = 8001\n", "'sever' is not a command's table", [SERVER, SCHEDULE_ADD]),
        ("[server\nport = 1\n", "not valid TOML", [SERVER, SCHEDULE_ADD]),
        ("port = 1\n", "'port' is not a command's table", [SERVER, SCHEDULE_ADD]),
    ],
)
def test_a_mistake_in_the_file_is_one_line_naming_file_table_and_key(
    tmp_path: Path,
    recorded: dict[str, dict[str, Any]],
    text: str,
    message: str,
    checked_by: list[list[str]],
) -> None:
    """Table names and syntax are checked for every command; a table's keys when it is used
    (and by `conveyor config`), so that no command imports every other one."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    for subcommand in [*checked_by, ["config"]]:
        result = CliRunner().invoke(cli, ["--config", str(config), *subcommand])
        assert result.exit_code == 1, result.output
        assert str(config) in result.output
        assert message in result.output
    if checked_by == [SERVER]:
        assert CliRunner().invoke(cli, ["--config", str(config), *SCHEDULE_ADD]).exit_code == 0


def test_a_missing_config_file_is_an_error() -> None:
    result = CliRunner().invoke(cli, ["--config", "/nonexistent/c.toml", "status"])
    assert result.exit_code == 1
    assert "config file '/nonexistent/c.toml' does not exist" in result.output


def test_conveyor_config_reports_value_and_source(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 8001\nhost = "0.0.0.0"\n')
    env = {
        "CONVEYOR_SERVER_HOST": "127.0.0.2",
        "CONVEYOR_TOKEN": "s3cret",
        "CONVEYOR_DB": "postgresql://conveyor:hunter2@db/conveyor",
    }
    result = invoke(["--config", str(config), "config", "server", "--json"], env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["config_file"] == str(config.resolve())
    server = report["commands"]["server"]
    assert server["--port"] == {
        "value": 8001,
        "source": f"{config.resolve()} [server]",
        "env": "CONVEYOR_SERVER_PORT",
        "error": None,
    }
    assert server["--host"]["value"] == "127.0.0.2"
    assert server["--host"]["source"] == "env CONVEYOR_SERVER_HOST"
    assert server["--workers"]["source"] == "default"
    assert server["--db"]["value"] == "postgresql://conveyor:********@db/conveyor"
    assert "hunter2" not in result.output

    worker = json.loads(invoke(["config", "worker", "--json"], env).output)
    assert worker["commands"]["worker"]["--token"]["value"] == "********"

    text = invoke(["--config", str(config), "config", "server"], env).output
    assert "flag > environment > config file > default" in text
    assert "--port" in text and "8001" in text and "[server]" in text


def test_conveyor_config_flags_an_invalid_value_and_exits_1() -> None:
    result = invoke(["config", "server"], {"CONVEYOR_SERVER_PORT": "eighty"})
    assert result.exit_code == 1
    assert "invalid: 'eighty' is not a valid integer" in result.output


def test_every_option_of_every_command_has_a_conveyor_variable_and_a_file_key() -> None:
    result = invoke(["config", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["commands"]
    ctx = click.Context(cli, info_name="conveyor")
    shared = {"--db": "CONVEYOR_DB", "--server": "CONVEYOR_URL", "--token": "CONVEYOR_TOKEN",
              "--ledger": "CONVEYOR_LEDGER_DIR"}  # fmt: skip
    seen = 0
    for name in COMMANDS:
        if name == "config":
            continue
        for path, cmd in leaf_commands(cli.get_command(ctx, name), (name,)):  # type: ignore[arg-type]
            options = [p for p in cmd.params if isinstance(p, click.Option)]
            rows = report[" ".join(path)]
            assert set(rows) == {"--" + option_key(p) for p in options}
            for p in options:
                row = rows["--" + option_key(p)]
                assert row["env"] == shared.get("--" + option_key(p), env_name(path, p))
                assert row["error"] is None
                seen += 1
    assert seen > 80


def test_help_shows_the_environment_variable() -> None:
    text = invoke(["server", "--help"]).output
    assert "CONVEYOR_SERVER_PORT" in text
    assert "CONVEYOR_DB" in text
