"""The child's request handling, the output tail and the wire format, run in-process: no child
processes here (output capture at the file descriptors is tested with real children, in
tests/integration/test_executor.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import conveyor.executor
from conveyor.core.types import JSON
from conveyor.errors import HandlerError
from conveyor.executor import Execution, wire
from conveyor.executor.capture import OutputTail
from conveyor.executor.child import describe_exception, run_request
from conveyor.executor.processes import describe_exit
from conveyor.handlers import HandlerPolicy

POLICY = HandlerPolicy(allow_modules=("tests",))


def run(handler: str, *args: JSON, **kwargs: JSON) -> dict[str, Any]:
    request = json.dumps({"handler": handler, "args": list(args), "kwargs": kwargs}).encode()
    handlers: dict[str, Callable[..., JSON]] = {}
    reply: dict[str, Any] = json.loads(run_request(request, POLICY, handlers))
    return reply


def test_public_api_is_pinned() -> None:
    assert conveyor.executor.__all__ == ["Execution", "ExecutionResult", "ProcessPool"]


def test_success_carries_the_result_and_no_output() -> None:
    # The output travels through the capture pipes, not in the reply.
    reply = run("tests.helpers.tasks:chatter", "out", "err")
    assert reply == {"outcome": "succeeded", "result": "done", "error": None, "traceback": None}


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
        # No store can keep these: the task fails saying why; its worker reports that.
        (
            "tests.helpers.chaos_jobs:unstorable_result",
            ["x", "surrogate"],
            "result cannot be stored: it holds text with no UTF-8 form",
        ),
        (
            "tests.helpers.chaos_jobs:unstorable_result",
            ["x", "too_large"],
            "result cannot be stored: result is 2,097,",
        ),
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


def test_handlers_are_resolved_once_per_child() -> None:
    handlers: dict[str, Callable[..., JSON]] = {}
    request = b'{"handler":"echo","args":[1],"kwargs":{}}'
    run_request(request, POLICY, handlers)
    assert set(handlers) == {"echo"}


@pytest.mark.parametrize(
    ("limit", "writes", "expected"),
    [
        (5, [b"hello world"], "world"),
        (5, [b"ab", b"cd", b"ef", b"gh"], "defgh"),
        (5, [b"a"] * 100, "aaaaa"),
        (0, [b"anything"], ""),
        (100, [b"short"], "short"),
        (3, ["ab\u00e9\u20ac\U0001f600".encode()], "\u00e9\u20ac\U0001f600"),
        # A cut through a character drops its remains rather than show U+FFFD.
        (2, ["\u20ac".encode() * 50, b"x"], "\u20acx"),
        (2, [b"\xff\xfe", b"ok"], "ok"),
    ],
)
def test_output_tail_keeps_the_last_characters(
    limit: int, writes: list[bytes], expected: str
) -> None:
    tail = OutputTail(limit)
    for data in writes:
        tail.feed(data)
    assert tail.text() == expected


def test_output_tail_memory_is_bounded() -> None:
    tail = OutputTail(10)
    for _ in range(10_000):
        tail.feed(b"0123456789" * 10)
    assert len(tail._data) <= 2 * 4 * 10
    assert tail.text() == "0123456789"
    tail.clear()
    assert tail.text() == ""


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
