"""The `shell` handler: run a command, capture its output, fail on a non-zero exit.

It runs only on workers started with `--allow shell` (and in `conveyor run` with `--allow shell`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import IO

from conveyor.core.types import JSON

OUTPUT_TAIL_BYTES = 64 * 1024
"""How much of the end of stdout and of stderr a result keeps; earlier output is dropped."""

_SH = "/bin/sh"
# The part of stderr quoted in a failure's one-line message.
_MESSAGE_STDERR_CHARS = 400
_MESSAGE_COMMAND_CHARS = 80


class CommandFailedError(RuntimeError):
    """The command exited with a non-zero code (and `check` was true)."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def shell(
    argv: list[str] | str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
    check: bool = True,
    shell: bool = False,
) -> JSON:
    """Run a command and return its exit code and output.

    Arguments:
    - `argv`: the program and its arguments, as a list (`["ls", "-l", "/tmp"]`). It runs as is,
      with no shell in between: no globbing, no variables, no pipes, no quoting to get wrong.
    - `shell`: to run a command line such as `"sort data.txt | uniq -c"` through `/bin/sh -c`,
      give it as `argv` (a single string) and set `shell: true`. Only then is a shell involved.
    - `cwd`: the working directory (default: the worker's).
    - `env`: variables to set for the command, on top of the task's environment (the minimal one
      its worker gives every task, plus `--pass-env`/`--env`; see docs/security.md); a null
      value removes a variable.
    - `input`: text sent to the command's standard input (default: none, stdin is empty).
    - `check`: fail when the command exits non-zero (default true). With `check: false`, a
      non-zero exit is a result like any other.

    Result: `{"exit_code": int (negative: killed by that signal), "stdout": str, "stderr": str,
    "stdout_truncated": bool, "stderr_truncated": bool}`. Output is decoded as UTF-8 (invalid
    bytes replaced); only the last 64 KiB of each stream is kept, and `*_truncated` says whether
    earlier output was dropped.

    Errors: CommandFailedError with the exit code and the end of stderr in its message (the
    output also goes to the attempt's captured stdout and stderr); FileNotFoundError when the
    program does not exist; TypeError or ValueError for malformed arguments. The task's
    `timeout_s` kills the command, and everything it started, along with the task.
    """
    command = _command(argv, shell)
    environment = _environment(env)
    if cwd is not None and not isinstance(cwd, str):
        raise TypeError(f"cwd must be a string, got {type(cwd).__name__}")
    if input is not None and not isinstance(input, str):
        raise TypeError(f"input must be a string, got {type(input).__name__}")
    # The process stays in the task's process group: a timeout or a cancel kills the group.
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if process.stdout is None or process.stderr is None:  # pragma: no cover - PIPE sets both
        raise RuntimeError("the command's output pipes were not created")
    # Threads drain both pipes (and feed stdin) at once, so a command that fills one pipe while
    # we wait on another cannot deadlock, and only the tails stay in memory.
    out, err = _Tail(process.stdout), _Tail(process.stderr)
    threads = [
        threading.Thread(target=out.drain, daemon=True),
        threading.Thread(target=err.drain, daemon=True),
    ]
    if input is not None and process.stdin is not None:
        threads.append(
            threading.Thread(target=_feed, args=(process.stdin, input.encode()), daemon=True)
        )
    for thread in threads:
        thread.start()
    exit_code = process.wait()
    for thread in threads:
        thread.join()
    stdout, stderr = out.text(), err.text()
    if check and exit_code != 0:
        # The result is lost with the failure: keep the output in the attempt's captured tails.
        sys.stdout.write(stdout)
        sys.stderr.write(stderr)
        shown = argv if shell else command[0]  # the command line, or the program
        raise CommandFailedError(_failure(str(shown), exit_code, stderr), exit_code=exit_code)
    return {
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
    }


def _command(argv: object, through_shell: object) -> list[str]:
    if not isinstance(through_shell, bool):
        raise TypeError(f"shell must be true or false, got {through_shell!r}")
    if through_shell:
        if not isinstance(argv, str) or not argv.strip():
            raise TypeError("with shell: true, argv must be one command line (a non-empty string)")
        return [_SH, "-c", argv]
    if isinstance(argv, str):
        raise TypeError(
            "argv must be a list such as ['ls', '-l']; to run a command line through "
            "/bin/sh, give it as a string and set shell: true"
        )
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError("argv must be a non-empty list of strings, such as ['ls', '-l']")
    return list(argv)


def _environment(env: object) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of names to strings, got {type(env).__name__}")
    environment = dict(os.environ)
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ValueError(f"env: {name!r} is not a variable name")
        if value is None:
            environment.pop(name, None)
        elif isinstance(value, str):
            environment[name] = value
        else:
            raise TypeError(f"env: the value of {name} must be a string or null")
    return environment


def _failure(shown: str, exit_code: int, stderr: str) -> str:
    if exit_code < 0:
        try:
            how = f"was killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            how = f"was killed by signal {-exit_code}"
    else:
        how = f"exited with code {exit_code}"
    # One line: the error line of a task shows the message's first line only.
    tail = " | ".join(line.strip() for line in stderr.splitlines() if line.strip())
    if len(tail) > _MESSAGE_STDERR_CHARS:
        tail = "..." + tail[-_MESSAGE_STDERR_CHARS:]
    if len(shown) > _MESSAGE_COMMAND_CHARS:
        shown = shown[: _MESSAGE_COMMAND_CHARS - 3] + "..."
    return f"command {shown!r} {how}" + (f"; stderr: {tail}" if tail else "; stderr was empty")


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except BrokenPipeError:
        pass  # the command did not read all of its input: its business
    finally:
        with contextlib.suppress(BrokenPipeError):
            stream.close()


class _Tail:
    """Reads a pipe to its end, keeping only the last OUTPUT_TAIL_BYTES."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._data = bytearray()
        self.truncated = False

    def drain(self) -> None:
        with self._stream:
            while chunk := os.read(self._stream.fileno(), 64 * 1024):
                self._data += chunk
                if len(self._data) > 2 * OUTPUT_TAIL_BYTES:  # trim rarely: O(1) per byte
                    del self._data[:-OUTPUT_TAIL_BYTES]
                    self.truncated = True

    def text(self) -> str:
        if len(self._data) > OUTPUT_TAIL_BYTES:
            del self._data[:-OUTPUT_TAIL_BYTES]
            self.truncated = True
        return self._data.decode("utf-8", errors="replace")
