"""What a worker advertises it runs, and the server's test of a task against it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conveyor.core.capabilities import Capabilities, missing_handler, runs, unmet
from conveyor.core.spec import TaskSpec
from conveyor.handlers import HandlerPolicy
from conveyor.handlers.registry import (
    BUILTIN_HANDLERS,
    FILES_HANDLERS,
    SHELL_HANDLERS,
    advertised,
    check_handler,
)
from conveyor.worker.config import WorkerConfig

EVERYTHING = HandlerPolicy(allow_shell=True, files_root="/srv", allow_modules=("*",))


@pytest.mark.parametrize(
    "policy",
    [
        HandlerPolicy(),
        HandlerPolicy(allow_shell=True),
        HandlerPolicy(files_root="/srv/files", allow_modules=("myapp", "other.jobs")),
        EVERYTHING,
    ],
)
def test_a_worker_advertises_exactly_the_builtins_its_policy_lets_through(
    policy: HandlerPolicy,
) -> None:
    caps = advertised(policy)
    for name in BUILTIN_HANDLERS:
        try:
            check_handler(name, policy)
        except Exception:
            allowed = False
        else:
            allowed = True
        assert caps.runs_handler(name) is allowed, name
    assert caps.modules == policy.allow_modules
    assert (caps.shell, caps.files) == (policy.allow_shell, policy.files_root is not None)


@pytest.mark.parametrize(
    ("handler", "modules", "expected"),
    [
        ("myapp:f", ("myapp",), True),
        ("myapp.jobs:f", ("myapp",), True),
        ("myapp.jobs:Class.f", ("myapp.jobs",), True),
        ("myappx:f", ("myapp",), False),
        ("myapp:f", ("myapp.jobs",), False),
        ("anything.at.all:f", ("*",), True),
        ("echo", ("*",), False),
    ],
)
def test_module_prefixes_match_as_the_workers_policy_does(
    handler: str, modules: tuple[str, ...], expected: bool
) -> None:
    caps = Capabilities(modules=modules)
    assert caps.runs_handler(handler) is expected
    if ":" in handler:
        assert HandlerPolicy(allow_modules=modules).allows_module(handler.split(":")[0]) is expected


def test_the_hints_name_the_option_that_allows_each_builtin() -> None:
    plain = advertised(HandlerPolicy())
    for name in SHELL_HANDLERS:
        assert "--allow shell" in (missing_handler(name, plain) or "")
    for name in FILES_HANDLERS:
        assert "--files-root" in (missing_handler(name, plain) or "")
    assert "--allow-module myapp" in (missing_handler("myapp.jobs:f", plain) or "")
    assert missing_handler("shell", None) is None, "a worker that did not say: offered anything"


def test_what_a_worker_lacks_is_named() -> None:
    caps = advertised(HandlerPolicy())
    lacking = unmet("shell", {"zone": "eu"}, {"gpu": 1}, caps, {"zone": "us"}, {"cpu": 4})
    assert lacking == [
        "the 'shell' handler: needs a worker started with --allow shell",
        "label zone=eu",
        "resource gpu=1",
    ]
    assert unmet("echo", {}, {"gpu": 0}, caps, {}, {}) == []
    assert runs("echo", {"zone": "eu"}, None, {"zone": "eu"})
    assert not runs("echo", {"zone": "eu"}, None, {})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"require": {"zone eu": "x"}}, "require"),
        ({"require": {"": "x"}}, "require"),
        ({"prefer": {"zone": "x\x00"}}, "prefer"),
        ({"require": {f"k{i}": "v" for i in range(21)}}, "require"),
        ({"require": {"zone": "eu"}, "prefer": {"zone": "us"}}, "prefer"),
    ],
)
def test_require_and_prefer_are_checked_at_the_door(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        TaskSpec(handler="echo", **fields)  # type: ignore[arg-type]
    assert err.value.errors()[0]["loc"][0] == field


def test_a_spec_may_require_and_prefer_labels_that_agree() -> None:
    spec = TaskSpec(handler="echo", require={"zone": "eu"}, prefer={"zone": "eu", "disk": "ssd"})
    assert (spec.require, spec.prefer) == ({"zone": "eu"}, {"zone": "eu", "disk": "ssd"})


def test_worker_labels_are_checked_when_the_worker_is_set_up() -> None:
    assert WorkerConfig(labels={"zone": "eu"}).labels == {"zone": "eu"}
    with pytest.raises(ValueError, match="label"):
        WorkerConfig(labels={"zone=eu": "x"})
