"""Job files: parsing, defaults, references, and one clear error per mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.errors import InvalidSpecError
from conveyor.jobfile import load_job_file, parse_job_file

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def parse(data: object):  # type: ignore[no-untyped-def]
    return parse_job_file(data, default_name="jobs", now=NOW)


def test_example_pipeline_loads() -> None:
    job = load_job_file(ROOT / "examples" / "pipeline.yaml", now=NOW)
    assert job.name == "pipeline"
    assert [s.name for s in job.specs] == ["compose", "digest", "pause", "report"]
    assert all(s.timeout_s == 30 for s in job.specs), "defaults apply to every task"
    assert job.specs[1].key == "pipeline:digest", "named tasks get keys so that a rerun continues"


def test_relative_and_absolute_start_times() -> None:
    job = parse({"tasks": [
        {"name": "a", "handler": "echo", "run_at": "+90s"},
        {"name": "b", "handler": "echo", "run_at": "+2h"},
        {"name": "c", "handler": "echo", "run_at": "2026-12-01T10:00:00+01:00"},
    ]})  # fmt: skip
    assert job.specs[0].run_at == NOW + timedelta(seconds=90)
    assert job.specs[1].run_at == NOW + timedelta(hours=2)
    assert job.specs[2].run_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_bare_list_is_a_task_list() -> None:
    assert len(parse([{"handler": "echo"}, {"handler": "echo"}]).specs) == 2


@pytest.mark.parametrize(
    ("data", "task", "field"),
    [
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "priority": "high"}]},
            "a",
            "priority",
            id="bad-priority",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "priorty": 1}]},
            "a",
            "priorty",
            id="typo-field",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "rm -rf /"}]}, "a", "handler", id="bad-handler"
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "run_at": "tomorrow"}]},
            "a",
            "run_at",
            id="bad-start",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "depends_on": ["ghost"]}]},
            "a",
            "depends_on",
            id="missing-dep",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo", "args": [{"$result": "ghost"}]}]},
            "a",
            "depends_on",
            id="missing-ref",
        ),
        pytest.param(
            {"tasks": [{"name": "a", "handler": "echo"}, {"name": "a", "handler": "echo"}]},
            "a",
            "name",
            id="duplicate",
        ),
        pytest.param(
            {"tasks": [{"handler": "echo", "timeout_s": -1}]}, "#1", "timeout_s", id="unnamed"
        ),
    ],
)
def test_errors_name_the_task_and_field(data: object, task: str, field: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse(data)
    assert (caught.value.task, caught.value.field) == (task, field)
    assert "\n" not in str(caught.value), "one line per error"


def test_cycle_is_refused_with_its_names() -> None:
    with pytest.raises(InvalidSpecError, match=r"a -> b -> a|b -> a -> b"):
        parse({"tasks": [
            {"name": "a", "handler": "echo", "depends_on": ["b"]},
            {"name": "b", "handler": "echo", "depends_on": ["a"]},
        ]})  # fmt: skip


@pytest.mark.parametrize(
    "data", [None, "text", {"tasks": []}, {"tasks": "x"}, {"jobs": []}, {"tasks": [1]}]
)
def test_malformed_files(data: object) -> None:
    with pytest.raises(InvalidSpecError):
        parse(data)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="cannot read"):
        load_job_file(tmp_path / "missing.yaml", now=NOW)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed")
    with pytest.raises(InvalidSpecError, match="not valid YAML"):
        load_job_file(bad, now=NOW)


def test_limits_are_read_with_the_tasks_that_take_them() -> None:
    job = parse({
        "vars": {"n": 3},
        "limits": {"db": {"concurrency": "${n}"}, "api": {"rate": 100, "per_s": 60}},
        "tasks": [{"name": "a", "handler": "echo", "limits": ["db", "api"]}],
    })  # fmt: skip
    assert [(x.name, x.concurrency, x.rate, x.per_s) for x in job.limits] == [
        ("db", 3, None, 1.0),  # a variable (text) that spells a number is that number
        ("api", None, 100, 60.0),
    ]
    assert job.specs[0].limits == ["db", "api"]


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (["db"], "limits"),
        ({"db": 5}, "limits.db"),
        ({"db": {}}, "limits.db"),
        ({"db": {"concurrency": -1}}, "limits.db.concurrency"),
        ({"db": {"rate": 1, "per_s": 0}}, "limits.db.per_s"),
        ({"db": {"concurrency": 1, "burst": 2}}, "limits.db.burst"),
        ({"a:b": {"concurrency": 1}}, "limits.a:b"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(limits: object, field: str) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        parse({"limits": limits, "tasks": [{"handler": "echo"}]})
    assert refused.value.field == field
