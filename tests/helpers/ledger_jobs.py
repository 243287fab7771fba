"""Job handlers for restart tests: each appends to a ledger file so a test can count executions."""

from __future__ import annotations

import os
import time


def _append(ledger: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, so concurrent children never interleave.
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def step(ledger: str, name: str, seconds: float = 0.05) -> str:
    """Record the start, work for `seconds`, record the end; returns `name`."""
    _append(ledger, f"start {name} {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, f"end {name} {os.getpid()}")
    return name


def flaky(ledger: str, name: str) -> str:
    """Fails on its first execution (as counted in the ledger), succeeds afterwards."""
    with open(ledger, encoding="utf-8") as f:
        earlier = sum(1 for line in f if line.split()[:2] == ["start", name])
    _append(ledger, f"start {name} {os.getpid()}")
    if earlier == 0:
        raise RuntimeError(f"{name} fails the first time")
    _append(ledger, f"end {name} {os.getpid()}")
    return name


def fail_times(ledger: str, name: str, times: int) -> str:
    """Fails on its first `times` executions (as counted in the ledger), then succeeds."""
    with open(ledger, encoding="utf-8") as f:
        earlier = sum(1 for line in f if line.split()[:2] == ["start", name])
    _append(ledger, f"start {name} {os.getpid()}")
    if earlier < times:
        raise RuntimeError(f"{name} fails on execution {earlier + 1} of {times}")
    _append(ledger, f"end {name} {os.getpid()}")
    return name


def sleep_recording_pid(pid_file: str, seconds: float) -> float:
    """Write this child's pid to `pid_file`, then sleep: lets a test check the child was killed."""
    with open(pid_file, "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return seconds
