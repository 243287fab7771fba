"""Everything an attempt starts dies with it, even what left the task's process group.

A handler may start processes that leave the child's process group and session (`setsid cmd &`,
a daemon's double fork), so killing the group is not enough. Each child is a subreaper
(PR_SET_CHILD_SUBREAPER): an orphan among its descendants is re-parented to the child instead
of to init, so every process an attempt started stays in the child's tree, where it can be
found. Then:

- when an attempt ends, the child kills every descendant it has (kill_descendants); a child
  with no children at all (most attempts) pays one system call for the check;
- when the pool kills a child (timeout, cancel, shutdown), it stops the child first, so that it
  can neither exit nor reap, kills its descendants until none is left alive, then kills the
  child (kill_trees); the orphans of killed processes land, as zombies, on the stopped child.

Linux only (prctl and /proc). Elsewhere, or where /proc cannot be read, the process group is
what gets killed. A cgroup would also catch processes whose parent chain leaves the child
entirely (a task that asks another service to start them), which a subreaper cannot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence

from conveyor.executor import linux

log = logging.getLogger(__name__)

_ROUNDS = 100
"""Kill rounds before giving up on a tree that keeps growing (a fork bomb outracing us)."""
_DIE_S = 5.0
"""How long the child waits for its killed descendants to die (one stuck in the kernel, say)."""
_LINUX = sys.platform.startswith("linux")


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants; False where that is not possible."""
    return linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)


def kill_trees(roots: Sequence[int]) -> None:
    """SIGKILL each of `roots` and every process below them. No root may have been reaped
    (its pid could belong to another process by then); each should be a subreaper, so that the
    orphans of the processes killed here stay below it until it dies itself."""
    if not _LINUX:
        _kill_all(roots)
        return
    stopped = []
    for root in roots:
        try:
            os.kill(root, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        stopped.append(root)
    try:
        for _ in range(_ROUNDS):
            table = linux.process_table()
            alive = [e.pid for r in stopped for e in linux.descendants(r, table) if not e.zombie]
            if not alive:
                break
            _kill_all(alive)
        else:
            log.warning("a task's processes kept multiplying while being killed; gave up")
    finally:
        _kill_all(stopped)


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_descendants() -> None:
    """Kill and reap every descendant of this process (a subreaper, so all of them end up as
    its children). Cheap when there are none."""
    if not _LINUX or not linux.has_children():
        return
    me = os.getpid()
    give_up_at = time.monotonic() + _DIE_S
    for _ in range(_ROUNDS):
        table = linux.process_table()
        if not table:
            return  # no /proc to find them in
        for entry in linux.descendants(me, table):
            if not entry.zombie:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(entry.pid, signal.SIGKILL)
        _reap()
        if not linux.has_children():
            return
        if time.monotonic() > give_up_at:
            break
        time.sleep(0.001)  # killed processes take a moment to become zombies
    log.warning("processes a task started did not die when killed; they are left behind")


def _reap() -> None:
    """Reap every child that has exited (the task's processes, and orphans re-parented here)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
