"""Handlers for the chaos, zombie and poison tests, run by workers with `--allow-module tests`.

A task that must behave differently on its first execution keeps a marker file in `markers`
(a directory shared by every worker): creating it with O_EXCL succeeds exactly once per name.
"""

from __future__ import annotations

import os
import signal
import sys
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


# ---- poison payloads: output, errors and results that no store can keep as they are ----------

GARBLED_START, GARBLED_END = "garbled-start", "garbled-end"
HUGE_OUTPUT_END = "huge-output-end"


def garbled_output(name: str, upstream: JSON = None) -> JSON:
    """Prints NUL bytes and lone surrogates, writes invalid UTF-8 straight to fd 1 and 2, and
    succeeds: what it printed is the task's business, and must not fail it or its worker."""
    print(f"{GARBLED_START} {name}: NUL \x00 here, a lone surrogate \ud800 there, \udfff too")
    sys.stdout.flush()
    os.write(1, b"raw bytes that are not UTF-8: \xff\xfe\xc3\x28 \x00 \xed\xa0\x80\n")
    os.write(2, b"\xff stderr too \x00\n")
    print("stderr \x00 \udcff", file=sys.stderr)
    print(f"{GARBLED_END} {name}", flush=True)
    return {"name": name}


def nul_error(name: str, upstream: JSON = None) -> JSON:
    """Fails with a message holding a NUL and a lone surrogate."""
    raise RuntimeError(f"{name} fails with a NUL \x00 and a lone surrogate \ud800 in its message")


def huge_output(name: str, megabytes: float, upstream: JSON = None) -> JSON:
    """Prints `megabytes` of text to stdout, then a last line naming the end; succeeds."""
    line = "x" * 1023 + "\n"
    for _ in range(int(megabytes * 1024)):
        sys.stdout.write(line)
    print(f"{HUGE_OUTPUT_END} {name}", flush=True)
    return {"name": name, "megabytes": megabytes}


def unstorable_result(name: str, kind: str, upstream: JSON = None) -> JSON:
    """Returns a result no store can keep: text with a lone surrogate (no UTF-8 form), a number
    JSON cannot carry, or more than the 1 MiB a result may hold."""
    if kind == "surrogate":
        return {"name": name, "text": "a lone surrogate \ud800 in a result"}
    if kind == "nan":
        return {"name": name, "value": float("nan")}
    if kind == "too_large":
        return {"name": name, "blob": "y" * (2 * 1024 * 1024)}
    raise ValueError(f"no such kind of unstorable result: {kind!r}")
