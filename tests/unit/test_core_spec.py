"""TaskSpec validation: good specs get defaults, bad ones name the offending field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.core.spec import (
    DEFAULT_RETRY_POLICY,
    MAX_PRIORITY,
    MAX_RETRIES,
    RetryPolicy,
    TaskSpec,
    parse_spec,
)


def _error_locs(data: dict[str, Any]) -> list[tuple[int | str, ...]]:
    with pytest.raises(ValidationError) as caught:
        parse_spec(data)
    return [tuple(error["loc"]) for error in caught.value.errors()]


def test_minimal_spec_gets_the_defaults() -> None:
    spec = parse_spec({"handler": "sha256"})
    assert spec.handler == "sha256"
    assert spec.args == []
    assert spec.kwargs == {}
    assert spec.name is None
    assert spec.queue == "default"
    assert spec.priority == 0
    assert spec.depends_on == []
    assert spec.run_at is None
    assert spec.delay_s is None
    assert spec.timeout_s is None
    assert spec.max_retries == 0
    assert spec.retry == DEFAULT_RETRY_POLICY == RetryPolicy()
    assert spec.resources == {}
    assert spec.key is None
    assert spec.labels == {}
    assert spec.display_name() == "sha256"


def test_display_name_prefers_the_name() -> None:
    assert TaskSpec(handler="sha256", name="digest").display_name() == "digest"


def test_spec_is_frozen() -> None:
    spec = TaskSpec(handler="sha256")
    with pytest.raises(ValidationError):
        spec.priority = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "handler",
    [
        "sha256",
        "files.copy",
        "http-get",
        "_private",
        "pkg.mod:func",
        "pkg:func",
        "pkg.mod:Cls.method",
    ],
)
def test_handler_accepted(handler: str) -> None:
    assert TaskSpec(handler=handler).handler == handler


@pytest.mark.parametrize(
    "handler",
    [
        "",
        "rm -rf",
        "rm -rf /",
        "a:b:c",
        "os.system;",
        "1abc",
        "pkg.mod:",
        ":func",
        "pkg..mod:func",
        "pkg.mod:1func",
        "pkg/mod:func",
        "sha256\n",
        "pkg.mod:func\n",
        " sha256",
        "x" * 101,
    ],
    ids=lambda h: repr(h) if len(h) < 20 else f"long-{len(h)}",
)
def test_handler_rejected(handler: str) -> None:
    assert _error_locs({"handler": handler}) == [("handler",)]


def test_missing_handler_names_the_field() -> None:
    assert _error_locs({}) == [("handler",)]


# Each row: extra fields on top of a valid handler, and the field the error must name.
BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("priority-bool-true", {"priority": True}, "priority"),
    ("priority-bool-false", {"priority": False}, "priority"),
    ("priority-string", {"priority": "5"}, "priority"),
    ("priority-float", {"priority": 1.5}, "priority"),
    ("priority-too-high", {"priority": MAX_PRIORITY + 1}, "priority"),
    ("priority-too-low", {"priority": -MAX_PRIORITY - 1}, "priority"),
    ("timeout-negative", {"timeout_s": -1}, "timeout_s"),
    ("timeout-zero", {"timeout_s": 0}, "timeout_s"),
    ("timeout-zero-float", {"timeout_s": 0.0}, "timeout_s"),
    ("timeout-nan", {"timeout_s": float("nan")}, "timeout_s"),
    ("timeout-string", {"timeout_s": "5"}, "timeout_s"),
    ("delay-negative", {"delay_s": -0.5}, "delay_s"),
    ("delay-bool", {"delay_s": True}, "delay_s"),
    ("max-retries-negative", {"max_retries": -1}, "max_retries"),
    ("max-retries-too-big", {"max_retries": MAX_RETRIES + 1}, "max_retries"),
    ("max-retries-bool", {"max_retries": True}, "max_retries"),
    ("unknown-field-typo", {"priorty": 1}, "priorty"),
    ("unknown-field", {"retries": 3}, "retries"),
    ("queue-empty", {"queue": ""}, "queue"),
    ("queue-space", {"queue": "my queue"}, "queue"),
    ("queue-slash", {"queue": "a/b"}, "queue"),
    ("queue-too-long", {"queue": "q" * 101}, "queue"),
    ("name-empty", {"name": ""}, "name"),
    ("name-space", {"name": "my task"}, "name"),
    ("resource-name-dash", {"resources": {"gpu-mem": 1}}, "resources"),
    ("resource-name-digit-first", {"resources": {"1gpu": 1}}, "resources"),
    ("resource-name-empty", {"resources": {"": 1}}, "resources"),
    ("resource-name-newline", {"resources": {"cpu\n": 1}}, "resources"),
    ("resource-negative", {"resources": {"cpu": -1}}, "resources"),
    ("resource-string", {"resources": {"cpu": "1"}}, "resources"),
    ("depends-on-empty-entry", {"depends_on": ["a", ""]}, "depends_on"),
    ("depends-on-not-a-list", {"depends_on": "a"}, "depends_on"),
    ("key-empty", {"key": ""}, "key"),
    ("args-not-a-list", {"args": {"a": 1}}, "args"),
    ("kwargs-not-an-object", {"kwargs": [1]}, "kwargs"),
    ("retry-unknown-field", {"retry": {"backof_s": 1}}, "retry"),
    ("retry-jitter-above-one", {"retry": {"jitter": 1.5}}, "retry"),
    ("retry-negative-backoff", {"retry": {"backoff_s": -1}}, "retry"),
    ("run-at-and-delay", {"run_at": "2030-01-01T00:00:00Z", "delay_s": 5}, "run_at|delay_s"),
]


@pytest.mark.parametrize(
    ("extra", "field"),
    [(extra, field) for _, extra, field in BAD_FIELDS],
    ids=[case_id for case_id, _, _ in BAD_FIELDS],
)
def test_bad_field_is_named(extra: dict[str, Any], field: str) -> None:
    locs = _error_locs({"handler": "sha256", **extra})
    assert locs, "expected at least one error"
    assert all(loc and loc[0] in field.split("|") for loc in locs), locs


def test_run_at_and_delay_message_says_what_to_do() -> None:
    with pytest.raises(ValidationError, match="run_at or delay_s, not both"):
        parse_spec({"handler": "sha256", "run_at": "2030-01-01T00:00:00Z", "delay_s": 5})


@pytest.mark.parametrize(
    ("extra", "field", "value"),
    [
        ({"priority": MAX_PRIORITY}, "priority", MAX_PRIORITY),
        ({"priority": -MAX_PRIORITY}, "priority", -MAX_PRIORITY),
        ({"timeout_s": 0.001}, "timeout_s", 0.001),
        ({"timeout_s": 30}, "timeout_s", 30),
        ({"delay_s": 0}, "delay_s", 0),
        ({"max_retries": MAX_RETRIES}, "max_retries", MAX_RETRIES),
        ({"resources": {"cpu": 0, "gpu": 1, "memory_mb": 2048.5}}, "resources", None),
        ({"queue": "gpu.high-prio_1:x"}, "queue", "gpu.high-prio_1:x"),
        ({"name": "fetch-1.a_b:c"}, "name", "fetch-1.a_b:c"),
        ({"key": "k"}, "key", "k"),
        ({"labels": {"team": "data"}}, "labels", {"team": "data"}),
    ],
    ids=[
        "max-priority",
        "min-priority",
        "tiny-timeout",
        "int-timeout",
        "zero-delay",
        "max-retries",
        "resources",
        "queue",
        "name",
        "key",
        "labels",
    ],
)
def test_boundary_values_accepted(extra: dict[str, Any], field: str, value: Any) -> None:
    spec = parse_spec({"handler": "sha256", **extra})
    assert getattr(spec, field) == (extra[field] if value is None else value)


@pytest.mark.parametrize(
    ("run_at", "expected"),
    [
        (datetime(2030, 1, 2, 3, 4, 5), datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (
            datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC),
        ),
        ("2030-01-02T03:04:05-05:00", datetime(2030, 1, 2, 8, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
    ids=["naive-datetime", "naive-string", "plus-two-hours", "minus-five-string", "zulu-string"],
)
def test_run_at_is_utc(run_at: datetime | str, expected: datetime) -> None:
    spec = parse_spec({"handler": "sha256", "run_at": run_at})
    assert spec.run_at == expected
    assert spec.run_at is not None
    assert spec.run_at.utcoffset() == timedelta(0)
    assert spec.run_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("depends_on", "expected"),
    [
        ([], []),
        (["a"], ["a"]),
        (["a", "a"], ["a"]),
        (["b", "a", "b", "c", "a"], ["b", "a", "c"]),
    ],
    ids=["empty", "one", "twice", "order-kept"],
)
def test_depends_on_is_deduplicated_in_order(depends_on: list[str], expected: list[str]) -> None:
    assert TaskSpec(handler="sha256", depends_on=depends_on).depends_on == expected


def test_args_and_kwargs_take_json() -> None:
    spec = parse_spec(
        {"handler": "sha256", "args": [1, "a", None, [True]], "kwargs": {"x": {"y": 1.5}}}
    )
    assert spec.args == [1, "a", None, [True]]
    assert spec.kwargs == {"x": {"y": 1.5}}
