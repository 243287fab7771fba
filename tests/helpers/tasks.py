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


def start_detached_then_sleep(address: str, seconds: float) -> JSON:
    """Start `sleep 300` in a session of its own (what `setsid sleep 300 &` does), announce its
    pid, then sleep: a process that neither the task's process group nor its session holds."""
    grandchild = subprocess.Popen(
        ["sleep", "300"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _announce(address, grandchild.pid)
    time.sleep(seconds)
    return grandchild.pid


def orphan_then_sleep(address: str, seconds: float) -> JSON:
    """Leave an orphan behind: a short-lived process starts `sleep 300` in a new session and
    exits, so the sleep is re-parented away from the task's process; announce its pid, sleep."""
    starter = (
        "import subprocess; p = subprocess.Popen(['sleep', '300'], start_new_session=True, "
        "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(p.pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter], capture_output=True, text=True, check=True
    )
    pid = int(done.stdout)
    _announce(address, pid)
    time.sleep(seconds)
    return pid


def write_everywhere(marker: str) -> str:
    """Write to stdout and stderr every way a handler can: print, raw file descriptors, and
    subprocesses that inherit them."""
    print(f"print-{marker}")
    print(f"print-err-{marker}", file=sys.stderr)
    os.write(1, f"fd1-{marker}\n".encode())
    os.write(2, f"fd2-{marker}\n".encode())
    subprocess.run(["echo", f"sub-out-{marker}"], check=True)
    subprocess.run(["sh", "-c", f"echo sub-err-{marker} >&2"], check=True)
    return marker


def flood(chars: int, end: str) -> int:
    """Write `chars` characters straight to file descriptor 1, then `end`."""
    os.write(1, b"x" * chars + end.encode())
    return chars


def write_then_sleep(marker: str, seconds: float) -> float:
    """Write a line to each stream, the raw way and the print way, then sleep (into a timeout)."""
    os.write(1, f"fd1-{marker}\n".encode())
    print(f"print-err-{marker}", file=sys.stderr)
    time.sleep(seconds)
    return seconds


def environment_report() -> JSON:
    """Everything a task can learn of environments: its own (as Python and as the kernel see
    it, and as a command it runs sees it), and its ancestors' (environment and command line),
    up to the first it may not read."""
    ancestors: list[JSON] = []
    pid = os.getppid()
    while pid > 1:
        ancestors.append(
            {
                "pid": pid,
                "environ": _proc_text(pid, "environ"),
                "cmdline": _proc_text(pid, "cmdline"),
            }
        )
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            break
    env = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    return {
        "environ": dict(os.environ),
        "proc_self": _proc_text(os.getpid(), "environ"),
        "env_command": env,
        "ancestors": ancestors,
    }


def _proc_text(pid: int, name: str) -> str | None:
    """/proc/<pid>/<name> with NULs as newlines; None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return None
