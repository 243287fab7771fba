"""The worker program: lease tasks from a server, run them in child processes, report results.

Four threads, one job each:

- main: owns the ProcessPool. It sleeps in pool.wait(), which returns as soon as an execution
  ends, a deadline passes (the pool kills the child) or another thread calls pool.wake(); it
  hands results to the reporter and starts the tasks the leaser delivered.
- leaser (`leasing.py`): long-polls the server for as many tasks as there are free slots.
- reporter (`reporting.py`): sends every finished attempt, batched, retrying while the server
  is unreachable; a result leaves the moment the main thread collects it, whatever the leaser
  is waiting for.
- heartbeater (`heartbeat.py`): extends the leases held and kills the tasks the server stops.

A prefetched task is started only while its lease surely runs: the lease answer and each
heartbeat's say for how long (bookkeeping.start_by). One whose lease ran out while the server
was unreachable may be another worker's by now, so it is handed back unstarted. One that waits
`prefetch_hold_s` for a slot while every slot stays busy is handed back too, for a worker with a
free slot to run (worker/waiting.py), and prefetching stops until tasks turn short again.

SIGTERM or SIGINT (or stop()) drains: leasing stops, running tasks get `grace_s` to finish and
are then killed and handed back (the engine re-queues them without spending a retry), the last
reports are flushed, and the worker deregisters. A second signal ends the grace period at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import httpx

from conveyor.api.schemas import AssignmentOut, RegisterIn, ReportIn
from conveyor.client.session import SyncTransport
from conveyor.client.worker_api import WorkerConnection
from conveyor.clock import SystemClock
from conveyor.core.states import Outcome
from conveyor.errors import ConveyorError
from conveyor.executor import Execution, ExecutionResult, ProcessPool
from conveyor.handlers.registry import advertised
from conveyor.hostmetrics import SystemMetrics, advertised_resources
from conveyor.ledger.records import ExecutionLedger
from conveyor.worker.bookkeeping import Bookkeeping, Lease
from conveyor.worker.config import WorkerConfig
from conveyor.worker.environment import task_environment
from conveyor.worker.heartbeat import Heartbeater
from conveyor.worker.leasing import Leaser
from conveyor.worker.registration import Registration
from conveyor.worker.reporting import Reporter
from conveyor.worker.signals import relay_stop_signals
from conveyor.worker.waiting import WaitingRoom

log = logging.getLogger(__name__)

HANDED_BACK_ERROR = "the worker shut down before the task finished; handed back to run again"
SHUTDOWN_ERROR = "the worker is shutting down; handed back unstarted"
STRANDED_ERROR = (
    "every slot of the worker stayed busy while the task waited for one: handed back unstarted, "
    "for a worker with a free slot to run"
)
LAPSED_ERROR = (
    "the lease ran out while the task waited for a slot on a worker that could not reach the "
    "server; handed back unstarted"
)
# ReportIn's limits: a report over them would be refused as a whole.
_ERROR_CHARS, _TEXT_CHARS = 10_000, 100_000


class Worker:
    """`Worker(WorkerConfig(server_url=...)).run()` until drained or, with `burst`, done.

    `transport` swaps the network for tests (httpx); `through` carries every call instead of
    the network (client.session.SyncTransport): embedded mode runs this worker over its
    in-process server (conveyor.server.local), and `config.server_url` is then not used.
    stop() may be called from any thread.
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        through: SyncTransport | None = None,
    ) -> None:
        self.config = config
        self._conn = WorkerConnection(
            config.server_url,
            token=config.token,
            timeout_s=config.http_timeout_s,
            transport=transport,
            through=through,
        )
        self._stop_requested = threading.Event()
        self._halt = threading.Event()  # the background threads' signal to end
        self._force = False
        self._burst_done = False
        self._failed = False
        self._pool: ProcessPool | None = None
        self._inbox: queue.SimpleQueue[AssignmentOut] = queue.SimpleQueue()
        self._waiting = WaitingRoom(config.prefetch_hold_s)
        """Leased, not started: prefetched tasks waiting for a slot (main thread only)."""
        self._handing_back: set[Lease] = set()
        self._ledger: ExecutionLedger | None = None
        self._clock = SystemClock()
        self.registration: Registration | None = None

    @property
    def worker_id(self) -> str | None:
        """The id the server knows this worker by; None until registered."""
        return self.registration.id if self.registration and self.registration.id else None

    def task_environment(self) -> dict[str, str]:
        """The whole environment of a task's process: the minimal one, built from this
        process's, plus what the config passes and sets (conveyor.worker.environment); or,
        with `inherit_environment`, this process's whole environment plus what it sets."""
        if self.config.inherit_environment:
            return {**os.environ, **self.config.env}
        return task_environment(os.environ, self.config.pass_env, self.config.env)

    def stop(self, reason: str = "asked to stop") -> None:
        """Drain and exit; called a second time, kill the running tasks now. Thread-safe."""
        if self._stop_requested.is_set():
            if not self._force:
                log.warning(f"{reason} again: handing back running tasks now")
            self._force = True
        else:
            # Draining a worker that runs nothing loses nothing: routine, not a warning.
            busy = self._pool is not None and bool(self._pool.running)
            log.log(
                logging.WARNING if busy else logging.INFO,
                f"{reason}: draining (running tasks get {self.config.grace_s:g}s to finish)",
            )
            self._stop_requested.set()
        if self._pool is not None:
            self._pool.wake()

    def run(self, *, handle_signals: bool = False) -> int:
        """Work until drained (exit status 0), or until a fault stops the worker (1).

        `handle_signals` turns SIGTERM and SIGINT into stop(); only on the main thread.
        """
        config = self.config
        with ExitStack() as stack:
            if handle_signals:
                stack.enter_context(relay_stop_signals(self._on_signal))
            stack.callback(self._conn.close)
            if config.ledger_dir is not None:
                self._ledger = ExecutionLedger(config.ledger_dir, config.display_name, os.getpid())
                stack.callback(self._ledger.close)
            pool = stack.enter_context(
                ProcessPool(
                    config.slots,
                    config.policy,
                    output_tail_chars=config.output_tail_chars,
                    memory_limit_mb=config.memory_limit_mb,
                    environment=self.task_environment(),
                )
            )
            self._pool = pool
            books = Bookkeeping(
                config.slots + (config.prefetch or 0),
                advertised_resources(config.resources),
                slots=config.slots,
                auto_prefetch=config.prefetch is None,
                hold_s=config.prefetch_hold_s,
            )
            registration = self.registration = Registration(
                self._conn,
                self._registration_request(books),
                self._stop_requested,
                on_forgotten=lambda worker_id: self._forgotten(worker_id, books),
            )
            if not registration.register():
                return 0  # stopped before the server could be reached
            metrics = SystemMetrics()
            stack.callback(metrics.close)
            threads = [
                self._thread("leaser", Leaser(
                    self._conn, registration, books, pool, self._inbox,
                    stop_leases=self._stop_leases, queues=config.queues,
                    wait_s=config.lease_wait_s, burst=config.burst,
                    halt=self._halt, on_burst_done=self._on_burst_done,
                ).run),
                self._thread("reporter", Reporter(
                    self._conn, registration, books, halt=self._halt
                ).run),
                self._thread("heartbeat", Heartbeater(
                    self._conn, registration, books, metrics, stop_leases=self._stop_leases,
                    halt=self._halt, on_drain=self._on_drain,
                ).run),
            ]  # fmt: skip
            try:
                self._work(pool, books)
            finally:
                self._shut_down(pool, books, registration, threads)
        return 1 if self._failed else 0

    # ---- the main loop ---------------------------------------------------------------------------

    def _work(self, pool: ProcessPool, books: Bookkeeping) -> None:
        grace_ends_at: float | None = None
        killed = False
        while True:
            # Awake when a prefetched task has waited its longest for a slot (_hand_back_stranded).
            wait_s = self._waiting.next_strand_s(time.monotonic())
            if grace_ends_at is not None and not killed:
                grace_s = max(grace_ends_at - time.monotonic(), 0.0)
                wait_s = grace_s if wait_s is None else min(wait_s, grace_s)
            for result in pool.wait(wait_s):
                self._finished(result, books)
            stopping = self._stop_requested.is_set()
            if stopping and grace_ends_at is None:
                books.stop_leasing()
                grace_ends_at = time.monotonic() + self.config.grace_s
            self._start_assigned(pool, books, hand_back=stopping)
            if stopping and not pool.running:
                return
            if self._burst_done and not pool.running and not self._waiting and self._inbox.empty():
                log.info("burst done: nothing left to lease", extra={"worker_id": self.worker_id})
                return
            if (
                grace_ends_at is not None
                and not killed
                and (self._force or time.monotonic() >= grace_ends_at)
            ):
                running = pool.running
                log.warning(
                    "grace period over: killing and handing back running tasks",
                    extra={"count": len(running), "task_ids": [task_id for task_id, _ in running]},
                )
                self._handing_back.update(running)
                for task_id, token in running:
                    pool.cancel(task_id, token)
                killed = True

    def _start_assigned(self, pool: ProcessPool, books: Bookkeeping, *, hand_back: bool) -> None:
        """Start what the leaser delivered, as far as slots allow; or hand it all back."""
        while True:
            try:
                self._waiting.arrive(self._inbox.get_nowait(), time.monotonic())
            except queue.Empty:
                break
        # Tasks whose older execution is still being killed (a lease superseded by this one):
        # they start once it is gone, so one task never runs twice at once here.
        deferred: list[AssignmentOut] = []
        while self._waiting and (hand_back or pool.free_slots > 0):
            a = self._waiting.next()
            if books.is_void(a.task_id, a.token):
                books.finished(a.task_id, a.token, None)
            elif not hand_back and any(task_id == a.task_id for task_id, _ in pool.running):
                deferred.append(a)
            elif hand_back:
                books.finished(a.task_id, a.token, _unstarted(a, SHUTDOWN_ERROR))
            elif books.lapsed(a.task_id, a.token):
                log.warning(
                    "a prefetched task's lease ran out before a slot was free, with no heartbeat "
                    "answered to extend it: handing it back unstarted",
                    extra={"task_id": a.task_id, "token": a.token},
                )
                books.finished(a.task_id, a.token, _unstarted(a, LAPSED_ERROR))
            else:
                if self._ledger is not None:
                    worker_id = self.worker_id or ""
                    self._ledger.started(a.task_id, a.token, worker_id, self._clock.now())
                pool.start(Execution(a.task_id, a.token, a.handler, a.args, a.kwargs, a.timeout_s))
        self._waiting.put_back(deferred, time.monotonic())
        if not hand_back:
            self._hand_back_stranded(books)

    def _hand_back_stranded(self, books: Bookkeeping) -> None:
        """Hand back the prefetched tasks that waited `prefetch_hold_s` for a slot (every slot
        stayed busy: they would wait as long as the running tasks take), and stop prefetching
        for a while: a worker with a free slot, one that joined later say, runs them now."""
        stranded = self._waiting.stranded(time.monotonic())
        if not stranded:
            return
        books.prefetch_stranded()
        log.info(
            "prefetched tasks waited for a slot behind long tasks: handing them back",
            extra={"count": len(stranded), "task_ids": [a.task_id for a in stranded]},
        )
        for a in stranded:
            void = books.is_void(a.task_id, a.token)
            books.finished(a.task_id, a.token, None if void else _unstarted(a, STRANDED_ERROR))

    def _forgotten(self, worker_id: str, books: Bookkeeping) -> None:
        """The server forgot this registration: its leases are void, their executions go."""
        void = books.forget(worker_id)
        if void:
            log.info(
                "the server stopped tasks; killing them",
                extra={
                    "worker_id": worker_id,
                    "count": len(void),
                    "task_ids": [task_id for task_id, _ in void],
                },
            )
        self._stop_leases(void)

    def _stop_leases(self, leases: list[Lease]) -> None:
        """Kill the executions of void leases (any thread); the main loop drops the unstarted."""
        pool = self._pool
        if pool is None or not leases:
            return
        for task_id, token in leases:
            pool.cancel(task_id, token)
        pool.wake()

    def _finished(self, result: ExecutionResult, books: Bookkeeping) -> None:
        task_id, token = result.task_id, result.token
        lease = (task_id, token)
        if books.is_void(task_id, token):
            # The server stopped it: the lease is gone and a report would be refused.
            self._handing_back.discard(lease)
            self._record_end(result, result.outcome, reported=False)
            books.finished(task_id, token, None)
            return
        outcome, error = result.outcome, result.error
        if lease in self._handing_back:
            self._handing_back.discard(lease)
            if outcome is Outcome.CANCELLED:  # killed by us at the end of the grace period
                outcome, error = Outcome.HANDED_BACK, HANDED_BACK_ERROR
        log.debug(
            "task finished", extra={"task_id": task_id, "token": token, "outcome": outcome.value}
        )
        # In the ledger before the report leaves: a recorded outcome always has its line.
        self._record_end(result, outcome, reported=True)
        ran_s = (result.finished_at - result.started_at).total_seconds()
        books.finished(task_id, token, _report(result, outcome, error), ran_s=ran_s)

    def _record_end(self, result: ExecutionResult, outcome: Outcome, *, reported: bool) -> None:
        if self._ledger is not None:
            self._ledger.ended(
                result.task_id,
                result.token,
                self.worker_id or "",
                started_at=result.started_at,
                finished_at=result.finished_at,
                outcome=outcome.value,
                reported=reported,
                result=result.result,
            )

    # ---- start and end ---------------------------------------------------------------------------

    def _registration_request(self, books: Bookkeeping) -> RegisterIn:
        resources = books.free_resources()  # all of them: nothing is leased yet
        return RegisterIn(
            name=self.config.display_name[:200],
            host=socket.gethostname()[:200] or "localhost",
            pid=os.getpid(),
            concurrency=self.config.slots,
            queues=list(self.config.queues),
            resources=resources,
            capabilities=advertised(self.config.policy) if self.config.advertise else None,
            labels=dict(self.config.labels),
        )

    def _shut_down(
        self,
        pool: ProcessPool,
        books: Bookkeeping,
        registration: Registration,
        threads: list[threading.Thread],
    ) -> None:
        books.stop_leasing()
        # Tasks a last long-poll delivered after the loop ended: give them back unstarted.
        self._start_assigned(pool, books, hand_back=True)
        if not books.wait_flushed(self.config.shutdown_flush_s):
            log.warning(
                "reports could not be delivered; the server will run those tasks again once "
                "their leases expire",
                extra={"worker_id": registration.id, "count": books.unreported()},
            )
        self._halt.set()
        books.close()
        self._deregister(registration)
        for thread in threads:
            # The leaser may be inside a long-poll: it is a daemon, and its lease dies with us.
            if thread.name != "conveyor-leaser":
                thread.join(timeout=self.config.http_timeout_s)

    def _deregister(self, registration: Registration) -> None:
        try:
            self._conn.deregister(registration.id)
        except ConveyorError as exc:
            log.warning(
                "could not deregister; the server will declare this worker dead",
                extra={"worker_id": registration.id, "error": str(exc)},
            )
        else:
            log.info("deregistered", extra={"worker_id": registration.id})

    def _thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException:
                log.exception("a worker thread failed; stopping the worker", extra={"thread": name})
                self._failed = True
                self.stop(f"the {name} thread failed")

        thread = threading.Thread(target=guarded, name=f"conveyor-{name}", daemon=True)
        thread.start()
        return thread

    def _on_signal(self, signum: signal.Signals) -> None:
        self.stop(f"{signum.name} received")

    def _on_drain(self, reason: str, hand_back: bool) -> None:
        # The server repeats its order in every heartbeat; only the first one counts (a stop
        # that follows a drain still hands the running tasks back).
        if not self._stop_requested.is_set():
            self.stop(reason)
        if hand_back and not self._force:
            log.warning(f"{reason}: handing back running tasks now")
            self._force = True
            if self._pool is not None:
                self._pool.wake()

    def _on_burst_done(self) -> None:
        self._burst_done = True
        if self._pool is not None:
            self._pool.wake()


def _unstarted(a: AssignmentOut, error: str) -> ReportIn:
    return ReportIn(task_id=a.task_id, token=a.token, outcome=Outcome.HANDED_BACK, error=error)


def _report(result: ExecutionResult, outcome: Outcome, error: str | None) -> ReportIn:
    return ReportIn(
        task_id=result.task_id,
        token=result.token,
        outcome=outcome,
        result=result.result,
        error=_clip(error, _ERROR_CHARS),
        traceback=_clip(result.traceback, _TEXT_CHARS),
        stdout_tail=result.stdout_tail[-_TEXT_CHARS:],
        stderr_tail=result.stderr_tail[-_TEXT_CHARS:],
    )


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
