"""Built-in handlers and the handler policy, table-driven. Nothing here starts a process."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import conveyor.handlers
from conveyor.errors import HandlerError
from conveyor.handlers import (
    BUILTIN_HANDLERS,
    HandlerPolicy,
    builtin,
    check_handler,
    registry,
    resolve_handler,
)
from conveyor.handlers.root import FilesRoot

HELLO_SHA256 = "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"


def test_public_api_is_pinned() -> None:
    assert conveyor.handlers.__all__ == [
        "BUILTIN_HANDLERS",
        "HandlerPolicy",
        "check_handler",
        "resolve_handler",
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((5,), {}, 5),
        (("hi",), {}, "hi"),
        (([1, 2],), {}, [1, 2]),
        ((None,), {}, None),
        ((), {"a": 1, "b": [2]}, {"a": 1, "b": [2]}),
        ((1, 2), {}, {"args": [1, 2], "kwargs": {}}),
        ((1,), {"a": 1}, {"args": [1], "kwargs": {"a": 1}}),
        ((), {}, {"args": [], "kwargs": {}}),
    ],
)
def test_echo_forms(args: tuple[Any, ...], kwargs: dict[str, Any], expected: object) -> None:
    assert builtin.echo(*args, **kwargs) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", HELLO_SHA256),
        ("", hashlib.sha256(b"").hexdigest()),
        ("héllo", hashlib.sha256("héllo".encode()).hexdigest()),
    ],
)
def test_sha256_of_text(text: str, expected: str) -> None:
    assert builtin.sha256(None, text) == expected


def test_sha256_honours_the_encoding() -> None:
    assert (
        builtin.sha256(None, "héllo", encoding="latin-1") == hashlib.sha256(b"h\xe9llo").hexdigest()
    )


def test_sha256_of_a_file_larger_than_one_chunk(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # about 5 MB: several chunks
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert builtin.sha256(FilesRoot.at(str(tmp_path)), path="data.bin") == (
        hashlib.sha256(data).hexdigest()
    )


def test_sha256_of_hello_file(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"Hello, World!")
    assert builtin.sha256(FilesRoot.at(str(tmp_path)), path=str(path)) == HELLO_SHA256


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"text": "a", "path": "/etc/hostname"}, ValueError),
        ({"text": 5}, TypeError),
        ({"path": 5}, TypeError),
    ],
)
def test_sha256_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        builtin.sha256(FilesRoot.at("/"), **kwargs)


def test_sleep_returns_the_seconds() -> None:
    assert builtin.sleep(0) == 0.0
    assert builtin.sleep(0.001) == 0.001


@pytest.mark.parametrize("seconds", [-1, "1", None, True, float("nan"), float("inf")])
def test_sleep_refuses_bad_durations(seconds: Any) -> None:
    with pytest.raises(ValueError, match="seconds must be"):
        builtin.sleep(seconds)


@pytest.mark.parametrize(("args", "message"), [((), "failed on purpose"), (("custom",), "custom")])
def test_fail_raises_runtime_error(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(RuntimeError, match=f"^{message}$"):
        builtin.fail(*args)


def test_builtins_are_read_only_and_documented() -> None:
    assert {"echo", "fail", "sha256", "sleep", "shell", "http", "files.read"} <= set(
        BUILTIN_HANDLERS
    )
    with pytest.raises(TypeError):
        BUILTIN_HANDLERS["evil"] = print  # type: ignore[index]
    for name, handler in BUILTIN_HANDLERS.items():
        assert handler.__doc__ and len(handler.__doc__) > 40, name


@pytest.mark.parametrize(
    ("prefixes", "module", "allowed"),
    [
        ((), "myapp", False),
        (("myapp",), "myapp", True),
        (("myapp",), "myapp.jobs", True),
        (("myapp",), "myapp.jobs.deep", True),
        (("myapp",), "myappx", False),
        (("myapp",), "myappx.jobs", False),
        (("myapp.jobs",), "myapp", False),
        (("myapp.jobs",), "myapp.jobs.x", True),
        (("myapp.jobs",), "myapp.jobsx", False),
        (("other", "myapp"), "myapp.jobs", True),
        (("*",), "anything.at.all", True),
    ],
)
def test_policy_module_prefixes(prefixes: tuple[str, ...], module: str, allowed: bool) -> None:
    assert HandlerPolicy(allow_modules=prefixes).allows_module(module) is allowed


@pytest.mark.parametrize("prefixes", [("",), ("my-app",), ("myapp.",), ("my app",), ("**",)])
def test_policy_refuses_invalid_prefixes(prefixes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="invalid module prefix"):
        HandlerPolicy(allow_modules=prefixes)


def test_policy_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError, match="not a string"):
        HandlerPolicy(allow_modules="myapp")  # type: ignore[arg-type]


def test_policy_turns_a_list_into_a_tuple() -> None:
    policy = HandlerPolicy(allow_modules=["myapp"])  # type: ignore[arg-type]
    assert policy.allow_modules == ("myapp",)
    hash(policy)  # frozen and hashable, as a policy should be


@pytest.mark.parametrize(
    ("name", "policy", "message"),
    [
        (
            "x.y:f",
            HandlerPolicy(),
            "handler 'x.y:f' is an arbitrary import; "
            "start the worker with --allow-module x to allow it",
        ),
        ("myappx.jobs:f", HandlerPolicy(allow_modules=("myapp",)), "--allow-module myappx"),
        ("nope", HandlerPolicy(), "unknown handler 'nope'"),
        ("nope", HandlerPolicy(), "built-in handlers are: echo, fail, files.append, "),
        ("myapp.jobs.f", HandlerPolicy(), "did you mean 'myapp.jobs:f'?"),
        ("", HandlerPolicy(), "unknown handler ''"),
        ("a:b:c", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("a.:f", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        (":f", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("a:", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("a b:f", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("a:f()", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("a:f.", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("class.x:f", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        ("../etc:f", HandlerPolicy(allow_modules=("*",)), "invalid handler name"),
        (5, HandlerPolicy(), "must be a string"),
    ],
)
def test_check_handler_refusals(name: Any, policy: HandlerPolicy, message: str) -> None:
    with pytest.raises(HandlerError) as caught:
        check_handler(name, policy)
    assert message in str(caught.value)


def test_check_handler_imports_nothing() -> None:
    name = "tests.helpers.never_imported_module:f"
    check_handler(name, HandlerPolicy(allow_modules=("tests",)))
    assert "tests.helpers.never_imported_module" not in sys.modules


@pytest.mark.parametrize("name", sorted(set(BUILTIN_HANDLERS) - registry.BOUND_HANDLERS))
def test_resolve_builtin(name: str) -> None:
    assert resolve_handler(name, HandlerPolicy(allow_shell=True)) is BUILTIN_HANDLERS[name]


def test_resolve_imports_an_allowed_module() -> None:
    handler = resolve_handler("json:dumps", HandlerPolicy(allow_modules=("json",)))
    assert handler([1]) == "[1]"


def test_resolve_follows_no_attribute_path_but_a_class() -> None:
    # `sep` is a str and `join` a builtin method: reached through an object, not defined in os.
    with pytest.raises(HandlerError, match=r"'os\.path:sep' is a str object, not a class"):
        resolve_handler("os.path:sep.join", HandlerPolicy(allow_modules=("os",)))
    handler = resolve_handler("json:JSONDecoder.decode", HandlerPolicy(allow_modules=("json",)))
    assert handler(json.JSONDecoder(), "[1]") == [1]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("json:no_such_function", "'json' has no attribute 'no_such_function'"),
        ("json.no_such_module:f", "could not be loaded: importing 'json.no_such_module' raised"),
        ("json:JSONDecoder.no_such", "'json.JSONDecoder' has no attribute 'no_such'"),
        ("json:decoder.no_such", "'json.decoder' is a module reached through another one"),
        ("string:ascii_letters", "is not callable: it is a str"),
    ],
)
def test_resolve_reports_load_failures(name: str, message: str) -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler(name, HandlerPolicy(allow_modules=("*",)))
    assert message in str(caught.value)


def test_resolve_refuses_before_importing() -> None:
    with pytest.raises(HandlerError, match="arbitrary import"):
        resolve_handler("tests.helpers.never_imported_module:f", HandlerPolicy())
    assert "tests.helpers.never_imported_module" not in sys.modules


def test_shell_handlers_need_allow_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend `echo` runs commands too, to exercise the mechanism on a harmless handler.
    monkeypatch.setattr(registry, "SHELL_HANDLERS", frozenset({"echo"}))
    with pytest.raises(HandlerError, match="start the worker with --allow shell"):
        check_handler("echo", HandlerPolicy())
    check_handler("echo", HandlerPolicy(allow_shell=True))
    assert resolve_handler("echo", HandlerPolicy(allow_shell=True)) is builtin.echo
