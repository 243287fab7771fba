"""The log formats the CLI configures: a record's fields are shown, in text as `key=value` that
no value can forge, in JSON as one object per line; the context's request id joins them."""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys

import pytest
from click.testing import CliRunner

from conveyor.cli.logs import JsonFormatter, OneLineFormatter, format_value
from conveyor.cli.main import cli
from conveyor.logcontext import bound, context_fields


def record(message: str = "store unavailable", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("conveyor.store", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def text(made: logging.LogRecord) -> str:
    return OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(made)


def fields_of(line: str) -> dict[str, str]:
    """The `key=value` pairs after the message, read back as a logfmt reader would."""
    _, _, tail = line.partition(": ")
    words = shlex.split(tail.replace("\\\\", "\x00").replace("\\n", "\n"), posix=True)
    return dict(w.replace("\x00", "\\").split("=", 1) for w in words if "=" in w)


def test_the_text_format_shows_every_field_of_a_record() -> None:
    line = text(record(db="/var/lib/conveyor/c.db", error="disk I/O error", attempt=3))
    assert line == (
        "WARNING conveyor.store: store unavailable db=/var/lib/conveyor/c.db "
        'error="disk I/O error" attempt=3'
    )


def test_fields_set_to_none_are_left_out_and_lists_are_joined() -> None:
    line = text(record(client=None, task_ids=["a1", "b2"], ok=True))
    assert line.endswith("store unavailable task_ids=a1,b2 ok=true"), line


@pytest.mark.parametrize(
    "value",
    [
        'x" task_id="forged',
        "x task_id=forged",
        "line\n2026-01-01 00:00:00,000 CRITICAL conveyor: FORGED",
        "\x1b[2J\u2028\u009b",
        "back\\slash\\",
        "",
    ],
)
def test_no_value_can_forge_a_field_or_a_line(value: str) -> None:
    line = text(record(error=value, worker_id="w1"))
    assert "\n" not in line
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line), repr(line)
    parsed = fields_of(line)
    assert set(parsed) == {"error", "worker_id"}, line
    assert parsed["worker_id"] == "w1"
    if not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", value):
        assert parsed["error"] == value


def test_format_value_quotes_only_what_needs_it() -> None:
    assert format_value("plain") == "plain"
    assert format_value(2.5) == "2.5"
    assert format_value("two words") == '"two words"'
    assert format_value('say "hi"') == '"say \\"hi\\""'
    assert format_value(["a b", "c"]) == '"[\\"a b\\",\\"c\\"]"'
    assert format_value({"gpu": 1}) == '"{\\"gpu\\":1}"'


def test_the_request_id_bound_to_the_context_joins_every_record() -> None:
    assert context_fields() == {}
    with bound(request_id="req-1"):
        line = text(record(task_id="t1"))
        assert context_fields() == {"request_id": "req-1"}
    assert line.endswith("task_id=t1 request_id=req-1"), line
    assert "request_id" not in text(record())


def test_the_json_format_is_one_object_per_line_with_the_fields() -> None:
    formatter = JsonFormatter()
    with bound(request_id="req-2"):
        line = formatter.format(
            record(error="a\nb\u2028c\u009bd", task_ids=["x"], level=5, message_id=None)
        )
    assert "\n" not in line and "\u2028" not in line and "\u009b" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "conveyor.store"
    assert entry["message"] == "store unavailable"
    assert entry["error"] == "a\nb\u2028c\u009bd"
    assert entry["task_ids"] == ["x"]
    assert entry["field_level"] == 5, "a field never hides the record's own keys"
    assert entry["request_id"] == "req-2"
    assert "message_id" not in entry
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])


def test_the_json_format_keeps_a_traceback_in_the_object() -> None:
    try:
        raise ValueError("bad\nline")
    except ValueError:
        made = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(made))
    assert "ValueError: bad" in entry["exception"]


@pytest.mark.parametrize("command", ["server", "worker"])
def test_server_and_worker_take_a_log_format_from_a_flag_or_the_environment(
    command: str,
) -> None:
    runner = CliRunner()
    variable = f"CONVEYOR_{command.upper()}_LOG_FORMAT"
    result = runner.invoke(cli, ["config", command, "--json"], env={variable: "json"})
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)["commands"][command]["--log-format"]
    assert resolved == {
        "value": "json",
        "source": f"env {variable}",
        "env": variable,
        "error": None,
    }
    refused = runner.invoke(cli, [command, "--log-format", "xml"])
    assert refused.exit_code == 2 and "'xml' is not one of 'text', 'json'" in refused.output
