"""`conveyor worker --processes N`: N worker processes on one host, kept running.

The supervisor starts N copies of `conveyor worker`, numbered 1..N (named NAME-1..NAME-N), and
restarts any copy that dies. One that exits with status 0 finished on purpose (a `--burst` run
that found no more work, or a drain an administrator asked for) and is not restarted; the
supervisor ends when none is left. A copy that dies quickly again and again is restarted after a
growing delay, so that a broken setup does not spin the CPU.

SIGTERM or SIGINT to the supervisor is forwarded as SIGTERM to every copy, each of which drains
(no new leases, running tasks get their grace period, reports are flushed); copies still running
after `stop_timeout_s` are killed. A second signal kills them at once. Each copy runs in its own
session, so a Ctrl-C in the terminal reaches only the supervisor and each worker hears one
SIGTERM, not two; and on Linux each copy gets SIGTERM when the supervisor itself dies (even by
SIGKILL), so workers are never left running unsupervised.

Each copy gets the supervisor's environment without Conveyor's secrets, and its token through
an inherited pipe (`--token-fd`), so that neither its environment nor its command line shows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from conveyor.executor import linux
from conveyor.worker.config import WorkerConfig
from conveyor.worker.protection import token_pipe
from conveyor.worker.signals import relay_stop_signals

log = logging.getLogger(__name__)

MIN_UPTIME_S = 10.0
"""A copy that dies sooner than this after its start counts as failing fast (backoff grows)."""
MAX_BACKOFF_S = 30.0
POLL_S = 0.2


@dataclass
class _Copy:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restart_at: float | None = None
    finished: bool = False


class Supervisor:
    """Keeps `count` processes of `command(index)` running until stopped."""

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        token: str | None = None,
        stop_timeout_s: float = 45.0,
        min_uptime_s: float = MIN_UPTIME_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.count = count
        self.command = command
        self.env = dict(env) if env is not None else None
        self._token = token
        """Handed to each copy through a pipe (`--token-fd`), out of its environment."""
        self.stop_timeout_s = stop_timeout_s
        self.min_uptime_s = min_uptime_s
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self._copies = [_Copy(index) for index in range(1, count + 1)]
        self._stop = threading.Event()
        self._kill = threading.Event()
        self._lock = threading.Lock()

    def pids(self) -> dict[int, int]:
        """index -> pid of the copies running now."""
        with self._lock:
            return {
                c.index: c.proc.pid
                for c in self._copies
                if c.proc is not None and c.proc.poll() is None
            }

    def stop(self) -> None:
        """Drain every copy; called again, kill them now. Thread-safe."""
        if self._stop.is_set():
            self._kill.set()
        self._stop.set()

    def run(self, *, handle_signals: bool = False) -> int:
        """Supervise until stopped (0) or until every copy finished on purpose (0).

        `handle_signals` turns SIGTERM and SIGINT into stop(); only on the main thread.
        """
        if handle_signals:
            with relay_stop_signals(lambda signum: self.stop()):
                return self._run()
        return self._run()

    def _run(self) -> int:
        for copy in self._copies:
            self._start(copy)
        try:
            while not self._stop.wait(POLL_S):
                if self._check():
                    log.info("every worker process finished; the supervisor exits")
                    return 0
        finally:
            self._stop_all()
        return 0

    def _start(self, copy: _Copy) -> None:
        argv = list(self.command(copy.index))
        token_fd = None if self._token is None else token_pipe(self._token)
        if token_fd is not None:
            argv += ["--token-fd", str(token_fd)]
        with self._lock:
            try:
                copy.proc = subprocess.Popen(  # our own argv, no shell
                    argv,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    start_new_session=True,
                    pass_fds=() if token_fd is None else (token_fd,),
                    preexec_fn=linux.signal_on_parent_death(signal.SIGTERM),
                )
            finally:
                if token_fd is not None:
                    os.close(token_fd)  # the copy has its own
            copy.started_at = time.monotonic()
            copy.restart_at = None
        log.info(
            "started worker process",
            extra={"index": copy.index, "pid": copy.proc.pid, "restarts": self.restarts},
        )

    def _check(self) -> bool:
        """Restart what died and is due; True when every copy has finished on purpose."""
        now = time.monotonic()
        for copy in self._copies:
            if copy.finished:
                continue
            if copy.restart_at is not None:
                if now >= copy.restart_at and not self._stop.is_set():
                    self.restarts += 1
                    self._start(copy)
                continue
            code = copy.proc.poll() if copy.proc is not None else None
            if code is None:
                continue
            if code == 0:
                copy.finished = True
                log.info("worker process finished", extra={"index": copy.index})
                continue
            uptime_s = now - copy.started_at
            copy.fast_failures = copy.fast_failures + 1 if uptime_s < self.min_uptime_s else 0
            delay_s = (
                min(self.max_backoff_s, 0.5 * 2 ** (copy.fast_failures - 1))
                if copy.fast_failures
                else 0.0
            )
            copy.restart_at = now + delay_s
            log.warning(
                "worker process died; restarting it",
                extra={"index": copy.index, "exit_code": code, "delay_s": delay_s},
            )
        return all(copy.finished for copy in self._copies)

    def _stop_all(self) -> None:
        alive = [c.proc for c in self._copies if c.proc is not None and c.proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        if alive:
            log.info("draining worker processes", extra={"count": len(alive)})
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in alive:
            while proc.poll() is None and time.monotonic() < deadline and not self._kill.is_set():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL_S)
            if proc.poll() is None:
                log.warning("killing a worker process that did not drain", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()


def worker_argv(config: WorkerConfig, *, index: int, base_name: str) -> list[str]:
    """The `conveyor worker` options that make a copy of the worker `config` describes.

    Every value is given as a flag, so the copy runs with what the supervisor resolved (flags beat
    the environment and the config file), and `--processes 0` keeps the copy from supervising in
    turn. The token is not here: it travels through a pipe (`--token-fd`), out of `ps`.
    """
    argv = [
        "worker",
        "--processes", "0",
        "--name", f"{base_name}-{index}",
        "--server", config.server_url,
        "--queues", ",".join(config.queues),
        "--grace-s", repr(config.grace_s),
    ]  # fmt: skip
    if config.prefetch is not None:
        argv += ["--prefetch", str(config.prefetch)]
    argv += ["--prefetch-hold-s", repr(config.prefetch_hold_s)]
    for key, value in config.labels.items():
        argv += ["--label", f"{key}={value}"]
    if config.concurrency is not None:
        argv += ["--concurrency", str(config.concurrency)]
    if config.resources:
        argv += ["--resources", ",".join(f"{k}={v}" for k, v in config.resources.items())]
    if config.burst:
        argv.append("--burst")
    if config.memory_limit_mb is not None:
        argv += ["--memory-limit-mb", str(config.memory_limit_mb)]
    if config.ledger_dir is not None:
        argv += ["--ledger", config.ledger_dir]
    policy = config.policy
    if policy.allow_shell:
        argv += ["--allow", "shell"]
    for prefix in policy.allow_modules:
        argv += ["--allow-module", prefix]
    for network in policy.allow_networks:
        argv += ["--allow-network", network]
    if policy.files_root is not None:
        argv += ["--files-root", str(policy.files_root)]
    for name in config.pass_env:
        argv += ["--pass-env", name]
    for name, value in config.env.items():
        argv += ["--env", f"{name}={value}"]
    return argv
