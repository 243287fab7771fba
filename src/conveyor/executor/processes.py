"""Starting, killing and describing the pool's child processes.

Children are started by a forkserver: a clean server process, started once per parent, that
forks each child. A plain fork would copy the parent's threads' locks in whatever state they are
in (the worker has a heartbeat thread); spawn would pay an interpreter start-up per child.
The server preloads the child module, so a new child is ready in a few milliseconds, plus the
time it takes to import the parent's main script: multiprocessing runs that in every child (as
`__mp_main__`), so a script that uses a pool must guard its entry point with
`if __name__ == "__main__":`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from conveyor.core.states import Outcome
from conveyor.executor import capture, child, containment, wire
from conveyor.executor.capture import OutputTail
from conveyor.executor.models import Execution
from conveyor.handlers.registry import HandlerPolicy

_CONTEXT = multiprocessing.get_context("forkserver")
_SERVER_PRELOAD = [
    # By name: importing it here would make this process ignore SIGTERM too.
    "conveyor.executor.forkserver_signals",
    child.__name__,
]


@dataclass(slots=True, eq=False)
class Child:
    """One child process, its end of the pipes, and the execution it is running, if any."""

    process: BaseProcess
    conn: Connection
    stdout: Connection
    """Read end of the pipe the child's fd 1 points at during an attempt (non-blocking)."""
    stderr: Connection
    stdout_tail: OutputTail
    stderr_tail: OutputTail
    execution: Execution | None = None
    started_at: datetime | None = None
    deadline: float | None = None
    """time.monotonic() value after which the execution is killed."""
    cancelled: bool = False
    ready: bool = False
    """Whether the child has sent wire.READY: set up and able to run requests."""


def start_child(
    policy: HandlerPolicy,
    output_tail_chars: int,
    memory_limit_mb: int | None,
    environment: Mapping[str, str] | None = None,
) -> Child:
    """Start one child process, ready to receive requests on the returned Child's `conn`.

    The child gets the parent's sys.path and working directory (multiprocessing sends both), so
    handlers importable in the parent are importable in the child; and `environment`, if given,
    instead of the one it inherits from the fork server.
    """
    # Takes effect only before the forkserver starts: there is one server per parent process.
    _CONTEXT.set_forkserver_preload(_SERVER_PRELOAD)
    parent_conn, child_conn = _CONTEXT.Pipe(duplex=True)
    stdout_r, stdout_w = _CONTEXT.Pipe(duplex=False)
    stderr_r, stderr_w = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=child.serve,
        args=(child_conn, policy, memory_limit_mb, environment, stdout_w, stderr_w),
        name="conveyor-executor",
        # Not a daemon: daemonic processes may not start processes of their own, and handlers
        # may want to (multiprocessing, concurrent.futures). ProcessPool kills its children at
        # close, at garbage collection and at interpreter exit instead.
        daemon=False,
    )
    try:
        process.start()
    except BaseException:
        for conn in (parent_conn, stdout_r, stderr_r):
            conn.close()
        raise
    finally:
        for conn in (child_conn, stdout_w, stderr_w):
            conn.close()  # the child holds its own copies now
    for conn in (stdout_r, stderr_r):
        os.set_blocking(conn.fileno(), False)
    return Child(
        process,
        parent_conn,
        stdout_r,
        stderr_r,
        OutputTail(output_tail_chars),
        OutputTail(output_tail_chars),
    )


def kill(*processes: BaseProcess, reaped: bool = False) -> None:
    """SIGKILL children, every process below them and everything in their process groups.
    Safe to call on a dead child.

    `reaped` says the children are known to be gone: then their pids may already belong to
    other processes, so only their groups (whose ids cannot be reused while any member lives)
    are signalled.
    """
    pids = [process.pid for process in processes if process.pid is not None]
    if not reaped:
        # The child is a subreaper: what its handler started is below it, even in another
        # session (containment).
        containment.kill_trees(pids)
    for pid in pids:
        # The child leads its own group (child.serve calls setpgrp); without a group (the child
        # is gone, or has not reached setpgrp yet) there is nothing more to do.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def drain_output(child_: Child) -> None:
    """Read all the output the child's attempt has written so far into its tails."""
    capture.drain(child_.stdout.fileno(), child_.stdout_tail)
    capture.drain(child_.stderr.fileno(), child_.stderr_tail)


def greet(child_: Child) -> bool:
    """Read the child's READY message. False if it died first (or said something else).

    Call only when its pipe is readable or it has died, so the read cannot block.
    """
    try:
        ready = child_.conn.recv_bytes() == wire.READY
    except (EOFError, OSError):
        return False
    child_.ready = ready
    return ready


def has_exited(process: BaseProcess) -> bool:
    """Whether the child is gone, without blocking. Cheaper than is_alive(), which builds a
    selector each time; the hand-off path calls this for every task."""
    return bool(select.select([process.sentinel], [], [], 0)[0])


def retire(child_: Child, *, killed: bool = False) -> int | None:
    """Kill a child (unless `killed` says that is done), wait until it is reaped, release its
    resources; return its exit code.

    Only the thread that runs the pool's wait() may call this: it reads the process' status.
    """
    if not killed:
        kill(child_.process, reaped=child_.process.exitcode is not None)
    child_.process.join()
    exitcode = child_.process.exitcode
    drain_output(child_)  # what the attempt wrote before it ended is still in the pipes
    for conn in (child_.conn, child_.stdout, child_.stderr):
        conn.close()
    child_.process.close()
    return exitcode


def describe_exit(exitcode: int | None) -> str:
    """'child process died: killed by SIGKILL' or '...: exited with code 3'."""
    if exitcode is None:
        return "child process died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"child process died: killed by {name}"
    return f"child process died: exited with code {exitcode}"


def describe_end(
    outcome: Outcome, execution: Execution, exitcode: int | None, *, starting: bool
) -> str:
    """The error line of an execution whose child was killed or died."""
    if outcome is Outcome.TIMED_OUT:
        return f"timed out after {float(execution.timeout_s or 0)}s"
    if outcome is Outcome.CANCELLED:
        return "cancelled while running"
    died = describe_exit(exitcode)
    return f"{died} while starting; the worker's stderr says why" if starting else died
