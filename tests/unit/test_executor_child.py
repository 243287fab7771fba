"""The child's request handling and the wire format, run in-process: no child processes here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

import conveyor.executor
from conveyor.core.types import JSON
from conveyor.errors import HandlerError
from conveyor.executor import Execution, wire
from conveyor.executor.child import TailBuffer, describe_exception, run_request
from conveyor.executor.processes import describe_exit
from conveyor.handlers import HandlerPolicy

POLICY = HandlerPolicy(allow_modules=("tests",))


def run(handler: str, *args: JSON, tail: int = 100, **kwargs: JSON) -> dict[str, Any]:
    request = json.dumps({"handler": handler, "args": list(args), "kwargs": kwargs}).encode()
    handlers: dict[str, Callable[..., JSON]] = {}
    reply: dict[str, Any] = json.loads(run_request(request, POLICY, tail, handlers))
    return reply


def test_public_api_is_pinned() -> None:
    assert conveyor.executor.__all__ == ["Execution", "ExecutionResult", "ProcessPool"]


def test_success_carries_the_result_and_output() -> None:
    reply = run("tests.helpers.tasks:chatter", "out", "err")
    assert reply == {
        "outcome": "succeeded",
        "result": "done",
        "error": None,
        "traceback": None,
        "stdout": "out",
        "stderr": "err",
    }


def test_streams_are_restored_after_the_call() -> None:
    before = sys.stdout, sys.stderr
    run("tests.helpers.tasks:chatter", "x", "y")
    run("tests.helpers.tasks:raise_value_error")
    assert (sys.stdout, sys.stderr) == before


def test_exception_becomes_a_failure_with_a_traceback() -> None:
    reply = run("tests.helpers.tasks:raise_value_error", "boom")
    assert reply["outcome"] == "failed"
    assert reply["error"] == "ValueError: boom"
    assert "in raise_value_error" in reply["traceback"]
    assert "run_request" not in reply["traceback"]  # the child's own frame is left out


@pytest.mark.parametrize(
    ("handler", "args", "error"),
    [
        ("tests.helpers.tasks:exit_with", [3], "SystemExit: 3"),
        ("tests.helpers.tasks:interrupt", [], "KeyboardInterrupt: pressed Ctrl-C in the handler"),
        ("tests.helpers.tasks:not_json", [], "result is not JSON serializable: Object of type set"),
        ("tests.helpers.tasks:nan", [], "result is not JSON serializable: Out of range float"),
        ("echo", [], None),
        ("sleep", [-1], "ValueError: seconds must be a finite number >= 0, got -1"),
        ("other.module:f", [], "start the worker with --allow-module other to allow it"),
        ("tests.helpers.tasks:missing", [], "'tests.helpers.tasks' has no attribute 'missing'"),
    ],
)
def test_failures_are_reported_not_raised(
    handler: str, args: list[JSON], error: str | None
) -> None:
    reply = run(handler, *args)
    if error is None:
        assert reply["outcome"] == "succeeded"
    else:
        assert reply["outcome"] == "failed"
        assert reply["result"] is None
        assert error in reply["error"]


def test_a_broken_user_module_reports_its_import_traceback() -> None:
    reply = run("tests.helpers.no_such_module:f")
    assert "could not be loaded" in reply["error"]
    assert "ModuleNotFoundError" in reply["traceback"]


def test_error_line_is_one_line_and_clipped() -> None:
    reply = run("tests.helpers.tasks:raise_value_error", "first line\nsecond" + "x" * 5000)
    assert reply["error"] == "ValueError: first line"
    reply = run("tests.helpers.tasks:raise_value_error", "y" * 5000)
    assert len(reply["error"]) == 1000 and reply["error"].endswith("...")


def test_output_is_bounded_to_the_tail() -> None:
    reply = run("tests.helpers.tasks:chatter", "a" * 500 + "END", "b" * 500 + "ERR", tail=10)
    assert reply["stdout"] == "a" * 7 + "END"
    assert reply["stderr"] == "b" * 7 + "ERR"


def test_handlers_are_resolved_once_per_child() -> None:
    handlers: dict[str, Callable[..., JSON]] = {}
    request = b'{"handler":"echo","args":[1],"kwargs":{}}'
    run_request(request, POLICY, 10, handlers)
    assert set(handlers) == {"echo"}


@pytest.mark.parametrize(
    ("limit", "writes", "expected"),
    [
        (5, ["hello world"], "world"),
        (5, ["ab", "cd", "ef", "gh"], "defgh"),
        (5, ["a"] * 100, "aaaaa"),
        (0, ["anything"], ""),
        (100, ["short"], "short"),
    ],
)
def test_tail_buffer_keeps_the_last_characters(
    limit: int, writes: list[str], expected: str
) -> None:
    buffer = TailBuffer(limit)
    for text in writes:
        assert buffer.write(text) == len(text)
    assert buffer.getvalue() == expected


def test_tail_buffer_refuses_bytes() -> None:
    with pytest.raises(TypeError, match="must be str"):
        TailBuffer(5).write(b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("boom"), "ValueError: boom"),
        (ValueError(), "ValueError"),
        (KeyError("k"), "KeyError: 'k'"),
        (RuntimeError("  \n"), "RuntimeError"),
    ],
)
def test_describe_exception(exc: BaseException, line: str) -> None:
    assert describe_exception(exc) == line


@pytest.mark.parametrize(
    ("exitcode", "text"),
    [
        (-9, "child process died: killed by SIGKILL"),
        (-11, "child process died: killed by SIGSEGV"),
        (3, "child process died: exited with code 3"),
        (None, "child process died"),
    ],
)
def test_describe_exit(exitcode: int | None, text: str) -> None:
    assert describe_exit(exitcode) == text


@pytest.mark.parametrize(
    "args", [[float("nan")], [object()], [{1, 2}]], ids=["nan", "object", "set"]
)
def test_requests_with_non_json_arguments_are_refused(args: list[Any]) -> None:
    execution = Execution("t", 1, "echo", args, {}, None)
    with pytest.raises(HandlerError, match="arguments are not JSON serializable"):
        wire.encode_request(execution)


@pytest.mark.parametrize("data", [wire.READY, b"[]", b'{"outcome":"maybe"}', b"not json"])
def test_anything_but_a_reply_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        wire.decode_reply(data)
