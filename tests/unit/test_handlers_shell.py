"""The `shell` handler, called directly: argv without a shell, the opt-in shell, env, cwd, input,
exit codes, signals and bounded output. Each case runs a real (short) command."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import HandlerError
from conveyor.handlers import HandlerPolicy, check_handler, resolve_handler
from conveyor.handlers.shell import OUTPUT_TAIL_BYTES, CommandFailedError, shell

HANDLERS_SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor" / "handlers"
THROUGH_SH = {"shell": True}  # passed as kwargs, the way a task spec carries it
PY = sys.executable


@pytest.mark.parametrize(
    ("argv", "kwargs", "stdout"),
    [
        pytest.param(["echo", "hi"], {}, "hi\n", id="plain"),
        pytest.param(
            ["echo", "$HOME", "*", "a|b", "`id`", ";", "'q'"],
            {},
            "$HOME * a|b `id` ; 'q'\n",
            id="no-shell-interpretation",
        ),
        pytest.param("echo $((1 + 2)) | tr 3 x", THROUGH_SH, "x\n", id="opt-in-shell"),
        pytest.param(["cat"], {"input": "fed on stdin"}, "fed on stdin", id="input"),
        pytest.param(["cat"], {}, "", id="no-input-is-empty-stdin"),
        pytest.param(
            ["/bin/sh", "-c", 'echo "$CONVEYOR_T-${CONVEYOR_GONE:-unset}"'],
            {"env": {"CONVEYOR_T": "set", "CONVEYOR_GONE": None}},
            "set-unset\n",
            id="env-set-and-removed",
        ),
        pytest.param(
            [PY, "-c", "import os; print('PATH' in os.environ)"],
            {"env": {"EXTRA": "1"}},
            "True\n",
            id="env-keeps-the-rest",
        ),
    ],
)
def test_runs(
    argv: Any, kwargs: dict[str, Any], stdout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_GONE", "inherited")
    result = shell(argv, **kwargs)
    assert result == {
        "exit_code": 0,
        "stdout": stdout,
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
    }


def test_cwd(tmp_path: Path) -> None:
    assert shell(["pwd"], cwd=str(tmp_path))["stdout"] == f"{os.path.realpath(tmp_path)}\n"


def test_non_zero_exit_fails_with_code_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandFailedError) as caught:
        shell(["/bin/sh", "-c", "echo partial; echo first >&2; echo 'it broke' >&2; exit 3"])
    assert caught.value.exit_code == 3
    assert str(caught.value) == "command '/bin/sh' exited with code 3; stderr: first | it broke"
    # The result is lost with the failure, so the output goes to the attempt's captured streams.
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("partial\n", "first\nit broke\n")


def test_check_false_returns_the_exit_code() -> None:
    result = shell(["/bin/sh", "-c", "echo bad >&2; exit 7"], check=False)
    assert (result["exit_code"], result["stderr"]) == (7, "bad\n")


def test_killed_by_a_signal() -> None:
    with pytest.raises(CommandFailedError, match="was killed by SIGTERM; stderr was empty"):
        shell("kill -TERM $$", **THROUGH_SH)


def test_a_shell_command_failure_names_the_command_line() -> None:
    with pytest.raises(CommandFailedError, match=r"^command 'exit 4' exited with code 4"):
        shell("exit 4", **THROUGH_SH)


def test_missing_program() -> None:
    with pytest.raises(FileNotFoundError):
        shell(["conveyor-no-such-program-here"])


def test_output_keeps_the_last_64_kib_of_each_stream() -> None:
    code = "import sys; sys.stdout.write('o' * 300000 + 'END'); sys.stderr.write('e' * 5 + 'ERR')"
    result = shell([PY, "-c", code])
    assert len(result["stdout"]) == OUTPUT_TAIL_BYTES and result["stdout"].endswith("oEND")
    assert result["stdout_truncated"] is True
    assert (result["stderr"], result["stderr_truncated"]) == ("eeeeeERR", False)


def test_full_pipes_on_both_sides_do_not_deadlock() -> None:
    # 1 MB in, 1 MB out on each stream, interleaved: far beyond any pipe buffer.
    code = (
        "import sys\n"
        "data = sys.stdin.read()\n"
        "for i in range(0, len(data), 4096):\n"
        "    sys.stdout.write(data[i:i + 4096]); sys.stderr.write(data[i:i + 4096])\n"
    )
    result = shell([PY, "-c", code], input="x" * 1_000_000)
    assert result["stdout"] == "x" * OUTPUT_TAIL_BYTES == result["stderr"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    result = shell([PY, "-c", "import sys; sys.stdout.buffer.write(b'a\\xffb')"])
    assert result["stdout"] == "a\ufffdb"


@pytest.mark.parametrize(
    ("argv", "kwargs", "error", "message"),
    [
        ("echo hi", {}, TypeError, "set shell: true"),
        ([], {}, TypeError, "non-empty list"),
        (["echo", 5], {}, TypeError, "list of strings"),
        (["echo"], THROUGH_SH, TypeError, "one command line"),
        ("  ", THROUGH_SH, TypeError, "one command line"),
        (["echo"], {"shell": "yes"}, TypeError, "true or false"),
        (["echo"], {"env": ["A=1"]}, TypeError, "mapping"),
        (["echo"], {"env": {"A": 1}}, TypeError, "string or null"),
        (["echo"], {"env": {"A=B": "1"}}, ValueError, "not a variable name"),
        (["echo"], {"input": 5}, TypeError, "input must be a string"),
        (["echo"], {"cwd": 5}, TypeError, "cwd must be a string"),
    ],
)
def test_refuses_malformed_arguments(
    argv: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        shell(argv, **kwargs)


def test_needs_allow_shell() -> None:
    with pytest.raises(HandlerError, match="start the worker with --allow shell"):
        check_handler("shell", HandlerPolicy(allow_modules=("*",), files_root="/"))
    assert resolve_handler("shell", HandlerPolicy(allow_shell=True)) is shell


def test_the_handlers_never_ask_subprocess_for_a_shell() -> None:
    asks = re.compile(r"(?<![A-Za-z_])shell\s*=\s*True")  # not allow_shell=True
    for path in HANDLERS_SRC.glob("*.py"):
        assert not asks.search(path.read_text()), path
