"""The few Linux process controls the executor and the worker use: prctl, and the process table.

Everything here degrades to "not available" (False, an empty table) on other systems, or where
the call is refused, so callers can fall back without asking which system they run on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def prctl(option: int, value: int) -> bool:
    """Call prctl(option, value); False where prctl does not exist or refused the call."""
    call = _prctl()
    if call is None:
        return False
    return call(option, ctypes.c_ulong(value), 0, 0, 0) == 0


def signal_on_parent_death(
    signum: int = signal.SIGTERM,
) -> Callable[[], None] | None:
    """A `preexec_fn` for a child that must not outlive the process starting it now: the child
    gets `signum` when its parent dies, even by SIGKILL; None where prctl is missing.

    The kernel sends it when the parent *thread* that forked ends, so start such children from
    a thread that lives as long as the process (the main thread, or uvicorn's event loop).
    """
    call = _prctl()
    if call is None:
        return None
    parent_pid = os.getpid()

    def setup() -> None:  # runs in the child between fork and exec: keep it tiny
        call(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return setup


@dataclass(frozen=True, slots=True)
class ProcessEntry:
    pid: int
    ppid: int
    zombie: bool


def process_table() -> dict[int, ProcessEntry]:
    """Every process this one can see, from /proc/<pid>/stat; empty without /proc.

    One pass over /proc: a few milliseconds with hundreds of processes, so it is read when a
    process tree must be killed, not on the path of every task.
    """
    table: dict[int, ProcessEntry] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; cut at the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 2:
            continue
        pid = int(name)
        table[pid] = ProcessEntry(pid, int(fields[1]), fields[0] in (b"Z", b"X"))
    return table


def descendants(root: int, table: dict[int, ProcessEntry]) -> list[ProcessEntry]:
    """The processes below `root` in `table`, parents before their children."""
    children: dict[int, list[ProcessEntry]] = {}
    for entry in table.values():
        children.setdefault(entry.ppid, []).append(entry)
    found: list[ProcessEntry] = []
    frontier = [root]
    while frontier:
        for entry in children.get(frontier.pop(), ()):
            found.append(entry)
            frontier.append(entry.pid)
    return found


def has_children() -> bool:
    """Whether this process has any child, running or exited and not yet reaped: one system
    call, without reaping anything."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True
