"""Keeping a worker's secrets (and a server's) from the tasks it runs.

A task runs as the worker's user. Such a process can read the environment and the memory of any
other process of that user that is dumpable, the default: /proc/<pid>/environ shows the
environment a process was started with, whatever it did to its own since. So:

- the worker, its supervisor and a server with local workers make themselves not dumpable
  (forbid_inspection, PR_SET_DUMPABLE 0): their /proc files then belong to root, and other
  processes of the same user can neither read them nor attach a debugger;
- a worker that Conveyor starts gets its token through an inherited pipe (token_pipe,
  read_token: `conveyor worker --token-fd N`), never in its environment or on its command line;
- the worker replaces its own environment by its tasks' before it starts its process pool
  (use_task_environment): the executor's fork server and the children it forks, a task's
  parent and the task itself, start from that environment only.

What remains: root, or a process of the worker's user that holds CAP_SYS_PTRACE, can still read
the worker's memory; a task may read files the worker's user can (a tokens file, say). Run
workers as a user of their own, with nothing else to read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from conveyor.executor import linux

_TOKEN_BYTES_MAX = 64 * 1024


def forbid_inspection() -> bool:
    """Make this process undumpable: other processes of its user (unless privileged) can read
    neither its /proc environ nor its memory. Inherited by forks, reset by exec: the processes
    it starts are not affected. False where that is not possible (not Linux)."""
    return linux.prctl(linux.PR_SET_DUMPABLE, 0)


def token_pipe(token: str) -> int:
    """A pipe holding `token`, for a child process to inherit: returns the read end (which the
    caller passes with `pass_fds` and then closes); the write end is closed already."""
    data = token.encode()
    if len(data) >= _TOKEN_BYTES_MAX:  # more than a pipe holds without a reader
        raise ValueError("the token is too long to hand over through a pipe")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def read_token(fd: int) -> str:
    """Read a token from `fd` to its end and close it (`--token-fd`)."""
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, _TOKEN_BYTES_MAX):
            chunks.append(chunk)
    finally:
        os.close(fd)
    token = b"".join(chunks).decode().strip()
    if not token:
        raise ValueError(f"file descriptor {fd} held no token")
    return token


def use_task_environment(environment: Mapping[str, str]) -> None:
    """Make `environment` this whole process's environment (a worker program, before its pool
    starts): what it starts from now on inherits nothing else."""
    os.environ.clear()
    os.environ.update(environment)
