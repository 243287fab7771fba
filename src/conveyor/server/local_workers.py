"""Worker processes started by `conveyor server --workers N` (the all-in-one mode).

They run `python -m conveyor worker --server URL` on this machine, are never restarted, and are
stopped with the server: SIGTERM first, so that they can finish and report what they run, then
SIGKILL after a grace period. Each runs in its own session, so a Ctrl-C in the terminal reaches
only the server, which then stops them in that order. On Linux each gets SIGTERM when the server
dies, even by SIGKILL, so none is left running (and leasing from whatever next takes the port).

They hold none of the server's secrets: the server gives them an environment without its tokens
and database settings (conveyor.worker.environment), and each its worker token through an
inherited pipe (`--token-fd`), never in its environment or on its command line.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from conveyor.executor.linux import signal_on_parent_death
from conveyor.server.auth import Role, TokenEntry
from conveyor.worker.protection import token_pipe

log = logging.getLogger(__name__)


class LocalWorkers:
    def __init__(
        self,
        count: int,
        worker_args: Sequence[str] = (),
        *,
        cli_args: Sequence[str] = (),
        grace_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.count = count
        self.worker_args = list(worker_args)
        self.env = dict(env) if env is not None else None
        """The workers' whole environment; None: this process's."""
        self._token = token
        """Handed to each worker through a pipe: not in its environment, not in `ps`."""
        self.cli_args = list(cli_args)
        self.grace_s = grace_s
        self._procs: list[subprocess.Popen[bytes]] = []
        self._reported: set[int] = set()
        self._stopping = False

    def command(self, url: str) -> list[str]:
        return [
            sys.executable, "-m", "conveyor", *self.cli_args,
            "worker", "--server", url, *self.worker_args,
        ]  # fmt: skip

    def start(self, url: str) -> None:
        for _ in range(self.count):
            argv = self.command(url)
            token_fd = None if self._token is None else token_pipe(self._token)
            if token_fd is not None:
                argv += ["--token-fd", str(token_fd)]
            try:
                proc = subprocess.Popen(  # the arguments are ours, not a shell string
                    argv,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=self.env,
                    pass_fds=() if token_fd is None else (token_fd,),
                    # A server killed with SIGKILL cannot stop them: the kernel does.
                    preexec_fn=signal_on_parent_death(signal.SIGTERM),
                )
            finally:
                if token_fd is not None:
                    os.close(token_fd)  # the worker has its own
            self._procs.append(proc)
            log.info("started a local worker", extra={"pid": proc.pid, "server_url": url})

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self._procs if p.poll() is None]

    def check(self) -> None:
        """Log workers that exited on their own (once each); they are not restarted."""
        if self._stopping:
            return
        for proc in self._procs:
            code = proc.poll()
            if code is not None and proc.pid not in self._reported:
                self._reported.add(proc.pid)
                log.warning(
                    "a local worker exited; it is not restarted",
                    extra={"pid": proc.pid, "exit_code": code},
                )

    def stop(self) -> None:
        """SIGTERM every worker, wait up to the grace period, then SIGKILL those still running."""
        self._stopping = True
        alive = self.alive
        for proc in alive:
            proc.terminate()
        deadline = time.monotonic() + self.grace_s
        for proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("a local worker ignored SIGTERM; killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        self._stopping = True
        for proc in self.alive:
            proc.kill()
            proc.wait()


def local_worker_token(entries: Sequence[TokenEntry]) -> tuple[str | None, TokenEntry | None]:
    """The token local workers authenticate with, never an admin's: the first worker token
    configured; else, when the API takes tokens, one made now for them alone, returned as an
    entry too, for the server to accept (it lives in this process's memory only, and dies with
    it); None when the API is open."""
    for entry in entries:
        if entry.role is Role.WORKER:
            return entry.token, None
    if not entries:
        return None, None
    made = TokenEntry(Role.WORKER, f"local-worker-{secrets.token_urlsafe(32)}")
    return made.token, made
