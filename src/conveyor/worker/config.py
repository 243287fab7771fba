"""How a worker is set up: read once, by the CLI or the code that builds the Worker."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.client.session import DEFAULT_URL
from conveyor.core.spec import PLACEMENT_LABEL_PATTERN
from conveyor.handlers import HandlerPolicy
from conveyor.worker import environment


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    server_url: str = DEFAULT_URL
    token: str | None = None
    name: str | None = None
    """Shown in `conveyor workers` and the dashboard; default `hostname-pid`."""
    concurrency: int | None = None
    """Tasks run at once, each in its own child process; default one per CPU."""
    prefetch: int | None = None
    """Tasks leased beyond the free slots, to wait here for one. None (the default) chooses as
    Dramatiq would, but by the tasks' length: lease a few more tasks than there are free slots
    so that the pool never waits on the network (when a task ends, the next one is already
    here, and one lease call carries several), about 20 ms of work's worth, between 1 and 32
    (see worker.bookkeeping). Few for long tasks: one prefetched behind a busy slot waits there
    while another worker might run it now. 0 leases only what the free slots start at once."""
    prefetch_hold_s: float = 1.0
    """The longest a prefetched task waits for a slot while every slot stays busy: then it is
    handed back, to run on a worker with a free slot, and the worker prefetches nothing more
    until a task ends within this time (worker.bookkeeping.PREFETCH_HOLD_S)."""
    queues: tuple[str, ...] = ("default",)
    resources: Mapping[str, float] = field(default_factory=dict)
    """Overrides of what the worker advertises (by default cpu, memory_mb and gpu of the host)."""
    burst: bool = False
    """Exit once a lease comes back empty and nothing is running (arq's burst mode)."""
    grace_s: float = 30.0
    """On SIGTERM/SIGINT, how long running tasks may go on before they are killed and handed back."""
    policy: HandlerPolicy = field(default_factory=HandlerPolicy)
    labels: Mapping[str, str] = field(default_factory=dict)
    """The operator's labels (`zone=eu`), advertised at registration: tasks may require or
    prefer them (TaskSpec.require, TaskSpec.prefer)."""
    advertise: bool = True
    """Tell the server at registration what the policy lets this worker run, so that it is
    leased only those tasks and others wait for a worker that runs them. Embedded mode, whose
    one worker has no other to wait for, does not: a task it cannot run fails at once, saying
    why."""
    lease_wait_s: float = 20.0
    """How long one lease long-poll may wait on the server for a task (at most 60)."""
    http_timeout_s: float = 10.0
    """For every call but the wait of a long-poll; keep it under the server's dead-worker time."""
    shutdown_flush_s: float = 10.0
    """At exit, how long to keep trying to deliver the last reports before giving up on them."""
    output_tail_chars: int = 4096
    memory_limit_mb: int | None = None
    """Address-space limit of each task's child process; None: no limit."""
    ledger_dir: str | None = None
    """Append a line to `<ledger_dir>/<name>-<pid>.jsonl` as each execution starts and ends
    (conveyor.ledger), so that a checker can prove after a run what ran where and when."""
    pass_env: tuple[str, ...] = ()
    """Variables of the worker's environment its tasks get too, beyond the minimal environment
    (conveyor.worker.environment); never CONVEYOR_*."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables set for every task (shown on the command line of `conveyor worker --env`)."""
    inherit_environment: bool = False
    """Tasks get this process's whole environment (plus `env`) instead of the minimal one. For
    a program whose tasks are its own code, as embedded mode's are (docs/security.md); never
    for a worker that runs what others submit: its environment may hold its secrets."""

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.prefetch is not None and self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.prefetch_hold_s <= 0:
            raise ValueError(f"prefetch_hold_s must be positive, got {self.prefetch_hold_s}")
        if not self.queues:
            raise ValueError("name at least one queue")
        if self.grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {self.grace_s}")
        if not 0 <= self.lease_wait_s <= 60:
            raise ValueError(f"lease_wait_s must be between 0 and 60, got {self.lease_wait_s}")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 1:
            raise ValueError(f"memory_limit_mb must be at least 1, got {self.memory_limit_mb}")
        if self.http_timeout_s <= 0 or self.shutdown_flush_s < 0:
            raise ValueError("http_timeout_s must be positive and shutdown_flush_s >= 0")
        for key in self.labels:
            if not re.fullmatch(PLACEMENT_LABEL_PATTERN, key):
                raise ValueError(
                    f"label {key!r} must be 1 to 100 letters, digits or _ . : / - (zone=eu)"
                )
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "pass_env", environment.check_pass_env(self.pass_env))
        object.__setattr__(self, "env", environment.check_env(self.env))

    @property
    def slots(self) -> int:
        return self.concurrency or os.cpu_count() or 1

    @property
    def display_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{os.getpid()}"
