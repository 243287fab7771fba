"""ProcessPool with real child processes: results, failures, crashes, timeouts, cancellation.

Tests wait on events (a result, a Unix socket the handler connects to), never on a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from multiprocessing import connection
from pathlib import Path

import pytest

from conveyor.core.limits import MAX_RESULT_BYTES
from conveyor.core.states import Outcome
from conveyor.core.types import JSON
from conveyor.executor import Execution, ExecutionResult, ProcessPool
from conveyor.handlers import HandlerPolicy
from conveyor.testing import pid_gone

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.helpers.tasks"
POLICY = HandlerPolicy(allow_modules=("tests",))


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # Children get the parent's sys.path; they import tests.helpers.tasks from the repo root.
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.fixture
def pool(importable_tests: None) -> Iterator[ProcessPool]:
    with ProcessPool(2, POLICY, output_tail_chars=64) as pool:
        yield pool


@pytest.fixture
def announcements() -> Iterator[Announcements]:
    with Announcements() as listener:
        yield listener


class Announcements:
    """A Unix socket that `announce_then_sleep` handlers report their pid to once they run."""

    def __init__(self) -> None:
        # The abstract namespace: no path length limit, nothing to clean up on disk.
        self.address = f"\0conveyor-test-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.address)
        self._sock.listen()
        self._sock.settimeout(10)

    def __enter__(self) -> Announcements:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sock.close()

    def next_pid(self) -> int:
        """Block until a handler announces itself; return its child's pid."""
        conn, _ = self._sock.accept()
        with conn:
            return int(conn.recv(64))


def execution(
    handler: str, *args: JSON, timeout_s: float | None = 10.0, task_id: str = "t1", token: int = 1
) -> Execution:
    return Execution(task_id, token, handler, list(args), {}, timeout_s)


def run_one(pool: ProcessPool, job: Execution, timeout_s: float = 10.0) -> ExecutionResult:
    pool.start(job)
    results = collect(pool, 1, timeout_s)
    assert [r.task_id for r in results] == [job.task_id]
    return results[0]


def collect(pool: ProcessPool, count: int, timeout_s: float = 10.0) -> list[ExecutionResult]:
    give_up_at = time.monotonic() + timeout_s
    results: list[ExecutionResult] = []
    while len(results) < count and time.monotonic() < give_up_at:
        results += pool.wait(give_up_at - time.monotonic())
    return results


def is_gone(pid: int) -> bool:
    """True once `pid` is neither running nor a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def assert_pool_still_works(pool: ProcessPool) -> None:
    result = run_one(pool, execution("echo", "still here", task_id="after"))
    assert (result.outcome, result.result) == (Outcome.SUCCEEDED, "still here")
    assert pool.free_slots == 2


def test_success_returns_the_result_and_echoes_the_token(pool: ProcessPool) -> None:
    result = run_one(pool, execution("echo", {"a": [1, 2.5, None]}, token=7))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.result == {"a": [1, 2.5, None]}
    assert (result.task_id, result.token, result.error, result.traceback) == ("t1", 7, None, None)
    assert result.started_at.tzinfo is UTC
    assert result.started_at <= result.finished_at


def test_builtin_sha256_runs_in_a_child(pool: ProcessPool) -> None:
    result = run_one(pool, execution("sha256", "Hello, World!"))
    assert result.result == "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"


def test_attribute_path_handler(pool: ProcessPool) -> None:
    assert run_one(pool, execution(f"{TASKS}:Jobs.double", 21)).result == 42


def test_exception_is_failed_with_a_traceback(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:raise_value_error", "boom"))
    assert result.outcome is Outcome.FAILED
    assert result.error == "ValueError: boom"
    assert result.traceback is not None and "raise_value_error" in result.traceback
    assert result.result is None
    assert_pool_still_works(pool)


def test_output_tails_are_captured_and_bounded(pool: ProcessPool) -> None:
    out, err = "o" * 1000 + "<end of stdout>", "e" * 1000 + "<end of stderr>"
    result = run_one(pool, execution(f"{TASKS}:chatter", out, err))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.stdout_tail == out[-64:]
    assert result.stderr_tail == err[-64:]
    # The next task in the same child starts with empty buffers.
    assert run_one(pool, execution("echo", 1)).stdout_tail == ""


def test_timeout_kills_the_child_and_frees_the_slot(
    pool: ProcessPool, announcements: Announcements
) -> None:
    began = time.monotonic()
    pool.start(execution(f"{TASKS}:announce_then_sleep", announcements.address, 30, timeout_s=0.5))
    pid = announcements.next_pid()
    [result] = collect(pool, 1)
    elapsed = time.monotonic() - began
    assert result.outcome is Outcome.TIMED_OUT
    assert result.error == "timed out after 0.5s"
    assert 0.5 <= elapsed < 0.5 + 0.25, elapsed
    assert is_gone(pid)
    assert_pool_still_works(pool)


def test_timeout_also_kills_what_the_handler_started(
    pool: ProcessPool, announcements: Announcements
) -> None:
    address = announcements.address
    pool.start(execution(f"{TASKS}:start_grandchild_then_sleep", address, 30, timeout_s=0.3))
    grandchild = announcements.next_pid()
    [result] = collect(pool, 1)
    assert result.outcome is Outcome.TIMED_OUT
    # Reparented to init once its parent died, so it may linger as a zombie: dead is enough.
    assert pid_gone(grandchild)


def assert_dies(pid: int, timeout_s: float = 5.0) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not pid_gone(pid):
        assert time.monotonic() < give_up_at, f"process {pid} outlived its task"
        time.sleep(0.01)


@pytest.fixture
def reap_strays() -> Iterator[list[int]]:
    """Pids a test expects dead: killed afterwards in any case, so a failure leaves nothing."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_detached_grandchild_dies_when_its_task_ends(
    pool: ProcessPool, announcements: Announcements, reap_strays: list[int]
) -> None:
    pool.start(execution(f"{TASKS}:start_detached_then_sleep", announcements.address, 0))
    grandchild = announcements.next_pid()
    reap_strays.append(grandchild)
    [result] = collect(pool, 1)
    assert (result.outcome, result.result) == (Outcome.SUCCEEDED, grandchild)
    assert_dies(grandchild)
    assert_pool_still_works(pool)


def test_a_detached_grandchild_dies_with_a_timed_out_task(
    pool: ProcessPool, announcements: Announcements, reap_strays: list[int]
) -> None:
    address = announcements.address
    pool.start(execution(f"{TASKS}:start_detached_then_sleep", address, 30, timeout_s=0.5))
    grandchild = announcements.next_pid()
    reap_strays.append(grandchild)
    [result] = collect(pool, 1)
    assert result.outcome is Outcome.TIMED_OUT
    assert_dies(grandchild)
    assert_pool_still_works(pool)


@pytest.mark.parametrize("end", ["ends", "cancelled", "timed_out"])
def test_an_orphan_in_its_own_session_dies_with_its_task(
    pool: ProcessPool, announcements: Announcements, reap_strays: list[int], end: str
) -> None:
    seconds, timeout_s = (0, 10.0) if end == "ends" else (30, 0.5 if end == "timed_out" else 30)
    job = execution(f"{TASKS}:orphan_then_sleep", announcements.address, seconds,
                    timeout_s=timeout_s)  # fmt: skip
    pool.start(job)
    orphan = announcements.next_pid()
    reap_strays.append(orphan)
    if end == "cancelled":
        assert pool.cancel(job.task_id, job.token)
    [result] = collect(pool, 1)
    expected = {"ends": Outcome.SUCCEEDED, "cancelled": Outcome.CANCELLED}
    assert result.outcome is expected.get(end, Outcome.TIMED_OUT)
    assert_dies(orphan)
    assert_pool_still_works(pool)


def test_output_is_captured_at_the_file_descriptors(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:write_everywhere", "m"))
    assert result.outcome is Outcome.SUCCEEDED
    for line in ("print-m", "fd1-m", "sub-out-m"):
        assert line in result.stdout_tail
    for line in ("print-err-m", "fd2-m", "sub-err-m"):
        assert line in result.stderr_tail
    assert "fd2-m" not in result.stdout_tail and "fd1-m" not in result.stderr_tail
    # The next task in the same child starts with empty tails.
    nothing = run_one(pool, execution("echo", 1))
    assert (nothing.stdout_tail, nothing.stderr_tail) == ("", "")


def test_raw_output_is_capped_to_its_tail(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:flood", 1_000_000, "<end>"))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.stdout_tail == ("x" * 1_000_000 + "<end>")[-64:]


def test_a_timed_out_task_keeps_the_output_it_wrote(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:write_then_sleep", "t", 30, timeout_s=0.5))
    assert result.outcome is Outcome.TIMED_OUT
    assert "fd1-t" in result.stdout_tail
    assert "print-err-t" in result.stderr_tail


def test_large_arguments_and_results_cross_the_pipe(pool: ProcessPool) -> None:
    # As large a result as a store keeps (1 MiB as JSON, its quotes included)...
    payload = "x" * (MAX_RESULT_BYTES - 2)
    result = run_one(pool, execution("echo", payload))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.result == payload
    # ...and larger arguments: a larger result fails its attempt, saying why.
    too_large = run_one(pool, execution("echo", "x" * 5_000_000))
    assert too_large.outcome is Outcome.FAILED
    assert too_large.error is not None and too_large.error.startswith("result cannot be stored")


def test_a_deadline_that_passes_before_the_child_is_ready(importable_tests: None) -> None:
    with ProcessPool(1, POLICY) as pool:
        pool.start(execution("sleep", 5, timeout_s=0.001))
        # Let READY arrive unread while the deadline passes: the case where it could pass
        # for a reply.
        assert connection.wait([pool._children[0].conn], timeout=10)
        [result] = collect(pool, 1)
        assert (result.outcome, result.error) == (Outcome.TIMED_OUT, "timed out after 0.001s")


def test_os_exit_is_crashed_and_the_pool_recovers(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:crash", 3))
    assert result.outcome is Outcome.CRASHED
    assert result.error == "child process died: exited with code 3"
    assert_pool_still_works(pool)


def test_sigkill_of_self_is_crashed(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:kill_self"))
    assert result.outcome is Outcome.CRASHED
    assert result.error == "child process died: killed by SIGKILL"
    assert_pool_still_works(pool)


def test_cancel_from_another_thread_ends_a_blocked_wait(
    pool: ProcessPool, announcements: Announcements
) -> None:
    pool.start(execution(f"{TASKS}:announce_then_sleep", announcements.address, 30, task_id="c"))
    pid = announcements.next_pid()
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.monotonic())
        assert pool.cancel("c")

    canceller = threading.Timer(0.05, cancel)  # lands while the main thread is inside wait()
    canceller.start()
    results = pool.wait(None)
    canceller.join()
    assert [(r.task_id, r.outcome) for r in results] == [("c", Outcome.CANCELLED)]
    assert time.monotonic() - cancelled_at[0] < 1.0
    assert is_gone(pid)
    assert not pool.cancel("c")
    assert_pool_still_works(pool)


def test_cancel_of_an_unknown_task_is_false(pool: ProcessPool) -> None:
    assert pool.cancel("nobody") is False


def test_memory_limit_fails_the_task_not_the_pool(importable_tests: None) -> None:
    with ProcessPool(2, POLICY, memory_limit_mb=512) as pool:
        result = run_one(pool, execution(f"{TASKS}:allocate", 2048))
        assert result.outcome in {Outcome.FAILED, Outcome.CRASHED}
        if result.outcome is Outcome.FAILED:
            assert result.error is not None and result.error.startswith("MemoryError")
        assert run_one(pool, execution(f"{TASKS}:allocate", 16)).result == 16 * 1024 * 1024
        assert_pool_still_works(pool)


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (
            "os:system",
            "handler 'os:system' is an arbitrary import; "
            "start the worker with --allow-module os to allow it",
        ),
        ("no_such_builtin", "unknown handler 'no_such_builtin'"),
        ("bad:name:here", "invalid handler name"),
    ],
)
def test_refused_handler_fails_without_a_child(
    pool: ProcessPool, handler: str, message: str
) -> None:
    pool.start(execution(handler))
    assert pool.free_slots == 2  # nothing was dispatched
    [result] = pool.wait(0)
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and message in result.error


def test_non_json_result_is_failed(pool: ProcessPool) -> None:
    result = run_one(pool, execution(f"{TASKS}:not_json"))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.startswith("result is not JSON serializable")


def test_two_slots_run_in_parallel(pool: ProcessPool) -> None:
    pool.start(execution("sleep", 0.3, task_id="a"))
    pool.start(execution("sleep", 0.3, task_id="b"))
    assert pool.free_slots == 0
    assert sorted(pool.running) == [("a", 1), ("b", 1)]
    with pytest.raises(RuntimeError, match="no free slot"):
        pool.start(execution("echo", task_id="c"))
    results = collect(pool, 2)
    assert sorted(r.task_id for r in results) == ["a", "b"]
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)
    a, b = sorted(results, key=lambda r: r.task_id)
    # Each ran while the other was running: parallel, whatever the load on the machine.
    assert a.started_at < b.finished_at and b.started_at < a.finished_at


def test_children_ignore_sigint(pool: ProcessPool, announcements: Announcements) -> None:
    pool.start(execution(f"{TASKS}:announce_then_sleep", announcements.address, 0.2))
    os.kill(announcements.next_pid(), signal.SIGINT)
    [result] = collect(pool, 1)
    assert (result.outcome, result.result) == (Outcome.SUCCEEDED, 0.2)


def test_wake_makes_wait_return(pool: ProcessPool) -> None:
    pool.wake()
    assert pool.wait(None) == []  # would block forever without the wake-up


def test_wait_gives_up_after_its_timeout(pool: ProcessPool) -> None:
    pool.start(execution("sleep", 5))
    began = time.monotonic()
    assert pool.wait(0.1) == []
    assert 0.1 <= time.monotonic() - began < 0.5


def child_pids(pool: ProcessPool) -> set[int]:
    """The pid of every child: one getpid task per slot, all in flight at once."""
    for i in range(pool.free_slots):
        pool.start(execution(f"{TASKS}:getpid", task_id=f"pid{i}"))
    pids = {result.result for result in collect(pool, len(pool.running))}
    assert all(isinstance(pid, int) for pid in pids)
    return pids  # type: ignore[return-value]


def test_close_leaves_no_children(importable_tests: None) -> None:
    pool = ProcessPool(2, POLICY)
    pids = child_pids(pool)
    assert len(pids) == 2
    pool.start(execution("sleep", 30))  # one busy, one idle
    pool.close()
    pool.close()  # idempotent
    assert all(is_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.wait(0)
    assert pool.cancel("t1") is False


def test_many_tasks_through_warm_children(pool: ProcessPool) -> None:
    pids_before = child_pids(pool)
    results: list[ExecutionResult] = []
    for i in range(200):
        if pool.free_slots == 0:
            results += pool.wait(10)
        pool.start(execution("echo", i, task_id=str(i)))
    results += collect(pool, len(pool.running))
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)
    assert [r.result for r in sorted(results, key=lambda r: int(r.task_id))] == list(range(200))
    assert child_pids(pool) == pids_before  # no child was replaced on the way


def test_a_child_that_died_while_idle_is_replaced_before_use(pool: ProcessPool) -> None:
    for pid in child_pids(pool):
        os.kill(pid, signal.SIGKILL)
        while not is_gone(pid):  # the forkserver reaps it; nothing else to wait on
            time.sleep(0.001)
    # Not one task pays for the dead children: each is replaced when picked.
    for i in range(4):
        result = run_one(pool, execution("echo", i, task_id=f"e{i}"))
        assert (result.outcome, result.result) == (Outcome.SUCCEEDED, i)
    assert pool.free_slots == 2


def test_a_main_script_without_a_guard_gets_a_clear_error_not_a_respawn_loop(
    tmp_path: Path,
) -> None:
    # Every child imports the main script; unguarded, each one tries to start a pool and dies.
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            from conveyor.executor import Execution, ProcessPool
            from conveyor.handlers import HandlerPolicy

            pool = ProcessPool(2, HandlerPolicy())
            pool.start(Execution("a", 1, "echo", [1], {}, None))
            try:
                for _ in range(100):
                    for result in pool.wait(1):
                        print("result:", result.outcome.value, result.error)
            except RuntimeError as exc:
                print("error:", exc)
            pool.close()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "result: crashed child process died: exited with code 1 while starting" in done.stdout
    assert "error: executor children keep dying while starting" in done.stdout
    assert 'guard that code with `if __name__ == "__main__":`' in done.stdout
