"""The guarded built-ins through a real ProcessPool: the policy the pool was started with decides,
the files root reaches the children, and a timeout kills what `shell` started."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.core.states import Outcome
from conveyor.core.types import JSON
from conveyor.executor import Execution, ExecutionResult, ProcessPool
from conveyor.handlers import HandlerPolicy
from conveyor.testing import pid_gone, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]

THROUGH_SH: dict[str, JSON] = {"shell": True}  # as a task spec's kwargs carry it


def run(
    pool: ProcessPool, handler: str, *args: JSON, timeout_s: float = 10, **kwargs: JSON
) -> ExecutionResult:
    pool.start(Execution("t1", 1, handler, list(args), dict(kwargs), timeout_s))
    give_up_at = time.monotonic() + 20
    while time.monotonic() < give_up_at:
        results = pool.wait(give_up_at - time.monotonic())
        if results:
            (result,) = results
            return result
    raise AssertionError(f"{handler} gave no result in time")


@pytest.fixture
def locked_pool() -> Iterator[ProcessPool]:
    """A pool with the default policy: no shell, no modules, no files root."""
    with ProcessPool(1, HandlerPolicy()) as pool:
        yield pool


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def open_pool(root: Path) -> Iterator[ProcessPool]:
    with ProcessPool(1, HandlerPolicy(allow_shell=True, files_root=str(root))) as pool:
        yield pool


@pytest.mark.parametrize(
    ("handler", "args", "message"),
    [
        ("shell", [["echo", "hi"]], "handler 'shell' runs commands; start the worker with --allow shell"),
        ("files.write", ["x.txt", "x"], "start the worker with --files-root DIR"),
        ("files.list", [], "start the worker with --files-root DIR"),
    ],
)  # fmt: skip
def test_refused_without_the_option(
    locked_pool: ProcessPool, tmp_path: Path, handler: str, args: list[JSON], message: str
) -> None:
    result = run(locked_pool, handler, *args)
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and message in result.error
    assert list(tmp_path.iterdir()) == [], "nothing ran"


def test_sha256_of_a_path_needs_a_root_but_text_does_not(locked_pool: ProcessPool) -> None:
    assert run(locked_pool, "sha256", "abc").outcome is Outcome.SUCCEEDED
    refused = run(locked_pool, "sha256", path="/etc/hostname")
    assert refused.outcome is Outcome.FAILED
    assert refused.error is not None and "--files-root DIR" in refused.error


def test_shell_runs_when_allowed(open_pool: ProcessPool) -> None:
    result = run(open_pool, "shell", ["echo", "allowed"])
    assert result.outcome is Outcome.SUCCEEDED
    assert isinstance(result.result, dict) and result.result["stdout"] == "allowed\n"


def test_a_failing_command_keeps_its_output_in_the_attempt(open_pool: ProcessPool) -> None:
    result = run(open_pool, "shell", "echo out; echo err >&2; exit 2", **THROUGH_SH)
    assert result.outcome is Outcome.FAILED
    assert (
        result.error
        == "CommandFailedError: command 'echo out; echo err >&2; exit 2' exited with code 2; stderr: err"
    )
    assert (result.stdout_tail, result.stderr_tail) == ("out\n", "err\n")


def test_file_handlers_work_in_the_root_the_pool_was_given(
    open_pool: ProcessPool, root: Path
) -> None:
    assert run(open_pool, "files.write", "a/b.txt", "hi", parents=True).outcome is Outcome.SUCCEEDED
    assert (root / "a" / "b.txt").read_text() == "hi"
    read = run(open_pool, "files.read", "a/b.txt")
    assert isinstance(read.result, dict) and read.result["content"] == "hi"
    escaped = run(open_pool, "files.read", "../outside.txt")
    assert escaped.outcome is Outcome.FAILED
    assert escaped.error is not None and escaped.error.startswith("OutsideRootError:")


def test_timeout_kills_the_command_and_its_children(open_pool: ProcessPool, root: Path) -> None:
    pid_file = root / "sleeper.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    pool_result: list[ExecutionResult] = []
    open_pool.start(Execution("t1", 1, "shell", [script], {"shell": True}, 1.0))
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the sleeper")
    sleeper = int(pid_file.read_text())
    give_up_at = time.monotonic() + 10
    while not pool_result and time.monotonic() < give_up_at:
        pool_result += open_pool.wait(give_up_at - time.monotonic())
    assert [r.outcome for r in pool_result] == [Outcome.TIMED_OUT]
    wait_until(lambda: pid_gone(sleeper), 5, f"the command's child {sleeper} to be killed")


@pytest.fixture
def app_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessPool]:
    """A pool that allows the stand-in user package tests.helpers.myapp, and nothing else."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # children import it from the repository root
    with ProcessPool(1, HandlerPolicy(allow_modules=("tests.helpers.myapp",))) as pool:
        yield pool


@pytest.mark.parametrize(
    ("handler", "command"),
    [
        ("tests.helpers.myapp:os.system", "touch {marker}"),
        ("tests.helpers.myapp:subprocess.getoutput", "touch {marker}"),
        ("tests.helpers.myapp:system", "touch {marker}"),
    ],
)
def test_an_allowed_package_is_no_way_to_run_commands(
    app_pool: ProcessPool, tmp_path: Path, handler: str, command: str
) -> None:
    marker = tmp_path / "ran"
    result = run(app_pool, handler, command.format(marker=marker))
    assert result.outcome is Outcome.FAILED, result
    assert result.error is not None and f"handler {handler!r} is refused" in result.error
    assert not marker.exists(), "the command ran"
    assert run(app_pool, "tests.helpers.myapp:add", 2, 3).result == 5
