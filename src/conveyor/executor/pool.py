"""ProcessPool: run handlers in long-lived child processes, with hard timeouts and cancellation.

One thread (the scheduler's or the worker's event loop) calls start() and wait(); any thread may
call cancel(), wake() and read `running`. Timeouts are enforced inside wait(): it sleeps until
the next result, the nearest deadline, the caller's timeout or a wake(), whichever comes first,
and SIGKILLs a child whose execution is past its deadline, with every process the attempt
started (containment). Every child that dies or is killed is replaced at once, so `size` slots
always exist. wait() also reads what running attempts write to their stdout and stderr
(capture), keeping the tail of each for the result.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.util import Finalize

from conveyor.clock import Clock, SystemClock
from conveyor.core.states import Outcome
from conveyor.core.types import TaskId, Token
from conveyor.errors import HandlerError
from conveyor.executor import capture, processes, wire
from conveyor.executor.models import Execution, ExecutionResult
from conveyor.executor.processes import Child
from conveyor.executor.wakeup import WakeUp
from conveyor.handlers.registry import HandlerPolicy, check_handler

logger = logging.getLogger(__name__)

# Children that die before they are set up will keep dying: stop instead of respawning forever.
_STARTUP_FAILURE_LIMIT = 3


class ProcessPool:
    """`size` child processes, started eagerly in the constructor, each running one call at a time.

    Use it as a context manager, or call close(): that kills every child. Tasks still running
    then are abandoned without a result; the caller decides what becomes of them.

    `environment`, if given, is the whole environment of every handler and of the processes it
    starts, instead of this process's. (The children are forked by a fork server, which has the
    environment this process had when its first pool started: a program that must keep secrets
    from its tasks scrubs its own environment before that, as `conveyor worker` does.)
    """

    def __init__(
        self,
        size: int,
        policy: HandlerPolicy,
        *,
        clock: Clock | None = None,
        output_tail_chars: int = 4096,
        memory_limit_mb: int | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if output_tail_chars < 0:
            raise ValueError(f"output_tail_chars must be >= 0, got {output_tail_chars}")
        if memory_limit_mb is not None and memory_limit_mb < 1:
            raise ValueError(f"memory_limit_mb must be at least 1 or None, got {memory_limit_mb}")
        self._policy = policy
        self._clock: Clock = clock or SystemClock()
        self._output_tail_chars = output_tail_chars
        self._memory_limit_mb = memory_limit_mb
        self._environment = dict(environment) if environment is not None else None
        # Guards the children's bookkeeping against cancel() and `running` from other threads.
        self._lock = threading.Lock()
        self._children: list[Child] = []
        # Every result passes through here, so one found while replacing a child is never lost.
        self._results: list[ExecutionResult] = []
        self._closed = False
        self._broken: str | None = None  # why the pool cannot go on, once it cannot
        self._startup_failures = 0  # children in a row that died before sending READY
        self._wake_up = WakeUp()
        # multiprocessing runs this at interpreter exit before it joins children (which would
        # hang on children blocked reading their pipe), and at garbage collection.
        self._finalizer = Finalize(
            self, _shut_down, args=(self._children, self._wake_up), exitpriority=10
        )
        try:
            for _ in range(size):
                self._children.append(self._start_child())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def free_slots(self) -> int:
        with self._lock:
            return sum(1 for child in self._children if child.execution is None)

    @property
    def running(self) -> list[tuple[TaskId, Token]]:
        """The executions on a child right now, including cancelled ones not yet reported."""
        with self._lock:
            return [
                (child.execution.task_id, child.execution.token)
                for child in self._children
                if child.execution is not None
            ]

    def start(self, execution: Execution) -> None:
        """Hand `execution` to a free child; its result comes out of a later wait().

        A handler the policy refuses, or arguments that are not JSON, fail at once (the result
        is FAILED) without reaching a child. Raises RuntimeError if no slot is free.
        """
        self._check_open()
        child = self._free_child()
        with self._lock:
            started_at = self._clock.now()
            try:
                check_handler(execution.handler, self._policy)
                payload = wire.encode_request(execution)
            except HandlerError as exc:
                now = self._clock.now()
                refused = ExecutionResult.unsuccessful(
                    execution, Outcome.FAILED, str(exc), started_at=started_at, finished_at=now
                )
                self._results.append(refused)
                return
            child.execution = execution
            child.started_at = started_at
            child.cancelled = False
            child.stdout_tail.clear()
            child.stderr_tail.clear()
            timeout_s = execution.timeout_s
            child.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Outside the lock: a large payload may block until the child reads it.
        # If the child died or was cancelled, wait() reports it through its sentinel.
        with contextlib.suppress(OSError):
            child.conn.send_bytes(payload)

    def wait(self, timeout_s: float | None) -> list[ExecutionResult]:
        """Block until a result is ready, `timeout_s` passes, or wake() is called.

        Returns every result ready by then, possibly none. `timeout_s=None` waits without limit;
        0 only looks. Kills children past their deadline and replaces dead ones meanwhile.
        """
        self._check_open()
        give_up_at = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        ready: set[object] = set()
        looked = False
        while True:
            self._collect(ready)
            with self._lock:
                results, self._results = self._results, []
            if results or self._wake_up.fd in ready:
                return results
            now = time.monotonic()
            if looked and give_up_at is not None and now >= give_up_at:
                return []
            # Sleep until something happens or the nearest deadline, whichever is first: no polling.
            waitables, deadline = self._waitables()
            wake_at = min((t for t in (deadline, give_up_at) if t is not None), default=None)
            sleep_s = None if wake_at is None else max(wake_at - now, 0.0)
            ready = set(connection.wait(waitables, sleep_s))
            looked = True
            if self._wake_up.fd in ready:
                self._wake_up.clear()

    def cancel(self, task_id: TaskId, token: Token | None = None) -> bool:
        """Kill the child running `task_id` under the lease `token` (any lease, if None); a
        later wait() reports it CANCELLED. Thread-safe.

        Returns False if no such execution runs here. Once this returns True the outcome is
        CANCELLED, even if the handler was finishing at that very moment. The slot stays taken
        until wait() has seen the child gone and replaced it.
        """
        found = False
        with self._lock:
            if self._closed:
                return False
            for child in self._children:
                execution = child.execution
                if (
                    execution is not None
                    and execution.task_id == task_id
                    and (token is None or execution.token == token)
                ):
                    found = True
                    if not child.cancelled:
                        child.cancelled = True
                        processes.kill(child.process)
        if found:
            self.wake()
        return found

    def wake(self) -> None:
        """Make a blocked wait() return now, or the next wait() return at once. Thread-safe."""
        self._wake_up.set()

    def close(self) -> None:
        """Kill every child and wait until they are gone. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def _free_child(self) -> Child:
        """A live idle child, preferring one that is ready. One that died since the last wait()
        is replaced first, so a task is never handed to a dead process and reported CRASHED."""
        while True:
            with self._lock:
                idle = [c for c in self._children if c.execution is None]
            child = min(idle, key=lambda c: not c.ready, default=None)
            if child is None:
                raise RuntimeError(
                    f"no free slot: all {len(self._children)} children are busy; "
                    "call wait() for a result first"
                )
            if not processes.has_exited(child.process):
                return child
            self._replace(child, Outcome.CRASHED)

    def _collect(self, ready: set[object]) -> None:
        """Turn replies, deaths, cancellations and passed deadlines into results."""
        now = time.monotonic()
        with self._lock:
            children = list(self._children)
        for child in children:
            if child.execution is not None:
                # Output first: a full pipe would keep the attempt from going on.
                if child.stdout.fileno() in ready:
                    capture.drain(child.stdout.fileno(), child.stdout_tail)
                if child.stderr.fileno() in ready:
                    capture.drain(child.stderr.fileno(), child.stderr_tail)
            died, readable = child.process.sentinel in ready, child.conn in ready
            # A reply this wait saw follows output that was in the pipes by then: read above.
            drained = readable
            # READY comes first: read it before anything can take it for a reply.
            if not child.ready and (readable or died or child.conn.poll()):
                if not processes.greet(child):
                    self._replace(child, Outcome.CRASHED)  # it died while starting
                    continue
                self._startup_failures = 0
                readable = child.conn.poll()  # a reply may have followed READY already
                drained = False
            execution = child.execution
            if execution is None:
                if died:
                    self._replace(child, Outcome.CRASHED)
                continue
            overdue = child.deadline is not None and now >= child.deadline
            if child.cancelled:
                self._replace(child, Outcome.CANCELLED)
            # A reply that beat the deadline by a hair still counts.
            elif readable or (overdue and child.conn.poll()):
                self._read_reply(child, died=died, drained=drained and readable)
            elif died:
                self._replace(child, Outcome.CRASHED)
            elif overdue:
                self._replace(child, Outcome.TIMED_OUT)

    def _read_reply(self, child: Child, *, died: bool, drained: bool) -> None:
        """Turn the child's reply into a result. `drained`: its output has been read already."""
        try:
            reply = wire.decode_reply(child.conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            self._replace(child, Outcome.CRASHED)  # it died before or while replying
            return
        with self._lock:
            execution, started_at = child.execution, child.started_at
            if child.cancelled or execution is None or started_at is None:
                cancelled = True
            else:
                cancelled = False
                child.execution = child.started_at = child.deadline = None
                finished_at = self._clock.now()
                if not drained:
                    # The child wrote its output before its reply, and its processes are gone.
                    processes.drain_output(child)
                self._results.append(
                    wire.to_result(
                        reply,
                        execution,
                        stdout_tail=child.stdout_tail.text(),
                        stderr_tail=child.stderr_tail.text(),
                        started_at=started_at,
                        finished_at=finished_at,
                    )
                )
        if cancelled:
            self._replace(child, Outcome.CANCELLED)  # cancel() won the race: keep its promise
        elif died:
            self._replace(child, Outcome.CRASHED)  # replied, then died: nothing to report

    def _replace(self, child: Child, outcome: Outcome) -> None:
        """Retire `child`, report its execution (if any) as `outcome`, start a new child."""
        with self._lock:
            execution, started_at = child.execution, child.started_at
            if child.cancelled:
                outcome = Outcome.CANCELLED  # cancel() returned True: that is the outcome
            # From here on cancel() cannot find the execution, so it will not signal this pid.
            child.execution = None
        starting = not child.ready and outcome is Outcome.CRASHED
        exitcode = processes.retire(child, killed=child.cancelled)
        if outcome is Outcome.CRASHED:
            log = logger.error if starting else logger.warning
            log("executor child died", extra={"exitcode": exitcode, "starting": starting})
        if execution is not None and started_at is not None:
            error = processes.describe_end(outcome, execution, exitcode, starting=starting)
            finished_at = self._clock.now()
            result = ExecutionResult.unsuccessful(
                execution,
                outcome,
                error,
                started_at=started_at,
                finished_at=finished_at,
                stdout_tail=child.stdout_tail.text(),
                stderr_tail=child.stderr_tail.text(),
            )
            with self._lock:
                self._results.append(result)
        try:
            self._startup_failures += starting
            if self._startup_failures >= _STARTUP_FAILURE_LIMIT:
                self._broken = (
                    "executor children keep dying while starting "
                    f"({processes.describe_exit(exitcode)}); their stderr says why. If the "
                    "main script starts a scheduler or a pool, guard that code with "
                    '`if __name__ == "__main__":`, because every child imports the main script.'
                )
                raise RuntimeError(self._broken)
            replacement = self._start_child()
        except BaseException:
            with self._lock:
                self._children.remove(child)
            raise
        with self._lock:
            self._children[self._children.index(child)] = replacement

    def _waitables(self) -> tuple[list[Connection | int], float | None]:
        """What wait() sleeps on: the wake pipe, every child's death, busy children's replies,
        new children's READY; and the nearest deadline."""
        with self._lock:
            waitables: list[Connection | int] = [self._wake_up.fd]
            for child in self._children:
                waitables.append(child.process.sentinel)
                if child.execution is not None or not child.ready:
                    waitables.append(child.conn)
                if child.execution is not None:
                    waitables += [child.stdout.fileno(), child.stderr.fileno()]
            deadlines = [
                child.deadline
                for child in self._children
                if child.execution is not None and child.deadline is not None
            ]
        return waitables, min(deadlines, default=None)

    def _start_child(self) -> Child:
        return processes.start_child(
            self._policy, self._output_tail_chars, self._memory_limit_mb, self._environment
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the process pool is closed")
        if self._broken is not None:
            raise RuntimeError(self._broken)


def _shut_down(children: list[Child], wake_up: WakeUp) -> None:
    """Kill all children first, then reap them: the kills proceed in parallel."""
    processes.kill(*(child.process for child in children))
    for child in children:
        processes.retire(child, killed=True)
    children.clear()
    wake_up.close()
