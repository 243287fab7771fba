"""Job file variables: `vars:` defaults, `${name}` in string values, `--var` overrides, and one
clear error (task and field) per mistake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import InvalidSpecError
from conveyor.jobfile import JobFile, load_job_file, parse_job_file

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parse(data: Any, **variables: str) -> JobFile:
    return parse_job_file(data, default_name="jobs", now=NOW, variables=variables)


FILE = {
    "name": "fetch-${site}",
    "vars": {"url": "http://127.0.0.1:8000", "site": "local", "pause": 0.5, "deep": True},
    "defaults": {"labels": {"site": "${site}"}},
    "tasks": [
        {
            "name": "get",
            "handler": "http",
            "args": ["${url}/index.html"],
            "kwargs": {"headers": {"X-Site": "${site}"}, "note": "${pause}s ${deep} $5 $HOME"},
        },
        {"name": "keep", "handler": "echo", "args": ["$${literal} and $${url}"]},
    ],
}


def test_defaults_are_substituted_everywhere() -> None:
    job = parse(FILE)
    get, keep = job.specs
    assert job.name == "fetch-local"
    assert get.args == ["http://127.0.0.1:8000/index.html"]
    assert get.kwargs == {"headers": {"X-Site": "local"}, "note": "0.5s true $5 $HOME"}
    assert get.labels == {"site": "local"}, "defaults are substituted too"
    assert keep.args == ["${literal} and ${url}"], "$${ writes a literal ${"


def test_overrides_win_over_defaults() -> None:
    job = parse(FILE, url="https://example.org", site="remote")
    assert job.specs[0].args == ["https://example.org/index.html"]
    assert job.name == "fetch-remote"
    assert job.specs[0].key == "fetch-remote:get"


def test_a_variable_without_a_default_can_come_from_the_command_line() -> None:
    data = {"tasks": [{"name": "a", "handler": "echo", "args": ["${who}"]}]}
    assert parse(data, who="you").specs[0].args == ["you"]


def test_a_file_without_variables_is_unchanged() -> None:
    data = {"tasks": [{"name": "a", "handler": "echo", "args": ["$result", {"$result": "b"}]},
                      {"name": "b", "handler": "echo"}]}  # fmt: skip
    assert parse(data).specs[0].args == ["$result", {"$result": "b"}]


@pytest.mark.parametrize(
    ("data", "variables", "task", "field", "message"),
    [
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "args": ["x", "${nope}"]}]},
            {}, "a", "args.1", "unknown variable 'nope'", id="unknown-in-args",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "http", "kwargs": {"url": "${u}"}}]},
            {}, "a", "kwargs.url", "pass --var u=VALUE", id="unknown-in-kwargs",
        ),
        pytest.param(
            {"tasks": [{"handler": "echo", "queue": "${q}"}]},
            {}, "#1", "queue", "unknown variable 'q'", id="unknown-unnamed-task",
        ),
        pytest.param(
            {"defaults": {"queue": "${q}"}, "tasks": [{"handler": "echo"}]},
            {}, None, "defaults.queue", "unknown variable 'q'", id="unknown-in-defaults",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "args": ["${not closed"]}]},
            {}, "a", "args.0", "malformed variable '${'", id="unclosed",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "args": ["${a-b}"]}]},
            {}, "a", "args.0", "malformed variable '${a-b}'", id="bad-name",
        ),
        pytest.param(
            {"vars": ["url"], "tasks": [{"handler": "echo"}]},
            {}, None, "vars", "must be a mapping", id="vars-not-a-mapping",
        ),
        pytest.param(
            {"vars": {"u": [1]}, "tasks": [{"handler": "echo"}]},
            {}, None, "vars.u", "text or a number", id="vars-not-scalar",
        ),
        pytest.param(
            {"vars": {"a b": "x"}, "tasks": [{"handler": "echo"}]},
            {}, None, "vars", "not a variable name", id="vars-bad-name",
        ),
        pytest.param(
            {"vars": {"url": "x"}, "tasks": [{"handler": "echo", "args": ["${url}"]}]},
            {"urll": "y"}, None, "vars", "--var urll: this job file has no variable", id="typo-in-var",
        ),
        pytest.param(
            {"tasks": [{"handler": "echo"}]},
            {"1x": "y"}, None, "vars", "not a variable name", id="var-bad-name",
        ),
    ],
)  # fmt: skip
def test_errors_name_the_task_and_field(
    data: Any, variables: dict[str, str], task: str | None, field: str, message: str
) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse(data, **variables)
    assert (caught.value.task, caught.value.field) == (task, field)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_job_file_loads_with_its_defaults(example: str) -> None:
    job = load_job_file(EXAMPLES / example, now=NOW)
    assert job.specs
