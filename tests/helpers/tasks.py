"""Handlers that misbehave on purpose, imported by path ('tests.helpers.tasks:crash') in children.

A pool needs HandlerPolicy(allow_modules=("tests",)) and the repository root on sys.path to run
them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from conveyor.core.types import JSON


def crash(code: int = 3) -> None:
    """Exit the child process at once, skipping every handler and finally block."""
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raise_value_error(message: str = "boom") -> None:
    raise ValueError(message)


def exit_with(code: int) -> None:
    sys.exit(code)


def interrupt() -> None:
    raise KeyboardInterrupt("pressed Ctrl-C in the handler")


def chatter(stdout: str, stderr: str) -> str:
    """Write in many small pieces, the way a chatty handler logs."""
    for char in stdout:
        print(char, end="")
    for char in stderr:
        print(char, end="", file=sys.stderr)
    return "done"


def not_json() -> object:
    return {1, 2, 3}


def nan() -> float:
    return float("nan")


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def getpid() -> int:
    return os.getpid()


def announce_then_sleep(address: str, seconds: float) -> JSON:
    """Tell the test this child's pid over a Unix socket, then sleep.

    The test waits on the socket instead of sleeping and hoping the handler has started.
    """
    _announce(address, os.getpid())
    time.sleep(seconds)
    return seconds


def start_grandchild_then_sleep(address: str, seconds: float) -> JSON:
    """Start a long `sleep` command, announce its pid, then sleep: a stand-in for a shell task."""
    grandchild = subprocess.Popen(["sleep", "60"])
    _announce(address, grandchild.pid)
    time.sleep(seconds)
    return seconds


def _announce(address: str, pid: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.sendall(str(pid).encode())


class Jobs:
    @staticmethod
    def double(value: int) -> int:
        return value * 2
