"""Handlers for the chaos, zombie and poison tests, run by workers with `--allow-module tests`.

A task that must behave differently on its first execution keeps a marker file in `markers`
(a directory shared by every worker): creating it with O_EXCL succeeds exactly once per name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conveyor.core.types import JSON


def _first_time(markers: str, name: str) -> bool:
    try:
        fd = os.open(os.path.join(markers, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def step(name: str, upstream: JSON = None, sleep_s: float = 0.0) -> JSON:
    """A link of a chain: waits `sleep_s`, returns its name and how long the chain is so far."""
    if sleep_s:
        time.sleep(sleep_s)
    depth = upstream.get("depth") if isinstance(upstream, dict) else 0
    return {"name": name, "depth": (depth if isinstance(depth, int) else 0) + 1}


def flaky(markers: str, name: str, upstream: JSON = None, sleep_s: float = 0.0) -> JSON:
    """Fails on its first execution, succeeds on every later one."""
    if _first_time(markers, name):
        raise RuntimeError(f"{name} fails the first time, as designed")
    return step(name, upstream, sleep_s)


def doomed(name: str, upstream: JSON = None) -> JSON:
    """Always fails."""
    raise RuntimeError(f"{name} always fails, as designed")


def oversleep(name: str, sleep_s: float, upstream: JSON = None) -> JSON:
    """Sleeps past its timeout."""
    time.sleep(sleep_s)
    return {"name": name, "slept_s": sleep_s}


def long_first_time(markers: str, name: str, first_s: float) -> JSON:
    """Runs `first_s` seconds the first time (its pid in `<name>.pid`, then `<name>.done` in
    `markers`), returns at once afterwards. The result names the process, so a test can tell whose result was recorded."""
    first = _first_time(markers, name)
    if first:
        Path(markers, f"{name}.pid").write_text(str(os.getpid()))
        time.sleep(first_s)
        Path(markers, f"{name}.done").touch()
    return {"name": name, "pid": os.getpid(), "first": first}


def kill_my_worker(markers: str, name: str) -> JSON:
    """SIGKILL the worker that runs this task (the parent of the executor's process tree) the
    first time; succeed afterwards. A stand-in for a task that brings its machine down."""
    if not _first_time(markers, name):
        return {"name": name, "pid": os.getpid()}
    pid = os.getppid()
    while pid > 1 and b"worker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(pid, signal.SIGKILL)
    time.sleep(60)  # the parent watch takes this process down with its worker
    return None


def grow_memory(chunk_mb: int = 16, limit_mb: int = 4096) -> int:
    """Allocate `chunk_mb` at a time up to `limit_mb`: a leak that only an rlimit stops."""
    hoard: list[bytearray] = []
    while len(hoard) * chunk_mb < limit_mb:
        hoard.append(bytearray(chunk_mb * 1024 * 1024))
    return len(hoard) * chunk_mb


def exit_hard(code: int = 7) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
