"""Bounds on task JSON, and the doors this code base keeps shut (no pickle, eval, yaml.load,
shell=True): checked on the source itself, so that a change that opens one fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.api.schemas import ReportIn
from conveyor.core.limits import MAX_DEPTH
from conveyor.core.spec import TaskSpec

SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"args": [nested(MAX_DEPTH + 1)]}, "args"),
        ({"kwargs": {"k": nested(MAX_DEPTH + 1)}}, "kwargs"),
        ({"args": ["x" * 300_000]}, "args"),
    ],
)
def test_deep_or_huge_arguments_are_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate({"handler": "echo", **fields})
    assert caught.value.errors()[0]["loc"][0] == field


def test_arguments_within_bounds_pass() -> None:
    spec = TaskSpec.model_validate(
        {"handler": "echo", "args": [nested(MAX_DEPTH - 1), "x" * 200_000]}
    )
    assert len(spec.args) == 2


def test_a_huge_or_deep_result_is_refused() -> None:
    for result in (nested(MAX_DEPTH + 5), "x" * 2_000_000):
        with pytest.raises(ValidationError) as caught:
            ReportIn.model_validate(
                {"task_id": "t", "token": 1, "outcome": "succeeded", "result": result}
            )
        assert caught.value.errors()[0]["loc"][0] == "result"


FORBIDDEN = [
    (r"\bimport pickle\b|\bfrom pickle\b|\bpickle\.", "pickle: task data is JSON, never pickled"),
    (r"\bcloudpickle\b|\bdill\b|\bmarshal\.loads\b", "serialisers that run code on load"),
    (
        r"\byaml\.load\(|\byaml\.unsafe_load\b|\bLoader=yaml\.Loader\b",
        "yaml.load: use yaml.safe_load",
    ),
    (r"(?<![\w.])eval\(|(?<![\w.])exec\(", "eval/exec"),
    (r"shell\s*=\s*True", "subprocess with shell=True"),
]


@pytest.mark.parametrize(
    ("pattern", "why"), FORBIDDEN, ids=[why.split(":")[0] for _, why in FORBIDDEN]
)
def test_the_source_has_no(pattern: str, why: str) -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, f"{why}:\n" + "\n".join(offenders)


def test_the_hygiene_check_would_catch_an_offender() -> None:
    assert any(re.search(p, "data = pickle.loads(blob)") for p, _ in FORBIDDEN)
    assert any(re.search(p, "subprocess.run(cmd, shell=True)") for p, _ in FORBIDDEN)
    assert not any(re.search(p, "yaml.safe_load(text)") for p, _ in FORBIDDEN)
