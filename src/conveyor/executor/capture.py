"""An attempt's stdout and stderr, captured at the file descriptors, tail only.

Each child gets two pipes from the pool. For the duration of an attempt the child points its
file descriptors 1 and 2 at them (Redirect), so that whatever the attempt writes ends up there:
`print`, `os.write(1, ...)`, C extensions, and the subprocesses it starts, which inherit the
descriptors. Between attempts they point back at the worker's own, so the child's own messages
still reach the worker's log and a task's output never does.

The pool reads the pipes as the output comes (a full pipe would block the task) and keeps only
the last `output_tail_chars` characters of each (OutputTail). Because the pool, not the child,
holds the output, what a task wrote before it was killed for its timeout is kept too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

_READ_BYTES = 65536


class OutputTail:
    """The last `limit` characters of the UTF-8 text fed to it, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._keep = 4 * limit  # a character is at most 4 bytes of UTF-8
        self._data = bytearray()
        self._cut = False

    def feed(self, data: bytes) -> None:
        if self._limit == 0:
            return
        self._data += data
        # Trim only once twice the tail has piled up, so that many small writes cost O(1) each.
        if len(self._data) > 2 * self._keep:
            del self._data[: -self._keep]
            self._cut = True

    def clear(self) -> None:
        self._data.clear()
        self._cut = False

    def text(self) -> str:
        if self._limit == 0:
            return ""
        data = bytes(self._data[-self._keep :])
        if self._cut or len(self._data) > self._keep:
            # Cut in the middle of a character: drop its continuation bytes, not show U+FFFD.
            start = 0
            while start < len(data) and start < 3 and data[start] & 0xC0 == 0x80:
                start += 1
            data = data[start:]
        return data.decode("utf-8", errors="replace")[-self._limit :]


def drain(fd: int, tail: OutputTail) -> bool:
    """Read what `fd` (non-blocking) holds into `tail`; True once the writers are all gone."""
    while True:
        try:
            data = os.read(fd, _READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            return True
        tail.feed(data)


class Redirect:
    """The child's side: points fds 1 and 2 at the capture pipes for one attempt at a time."""

    def __init__(self, stdout_fd: int, stderr_fd: int) -> None:
        self._pipes = (stdout_fd, stderr_fd)
        for fd in (1, 2):
            # A worker started with a closed stdout or stderr: give the child something to
            # restore between attempts.
            try:
                os.fstat(fd)
            except OSError:
                null = os.open(os.devnull, os.O_WRONLY)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
        self._saved = (os.dup(1), os.dup(2))
        # Python-level streams that write straight through to the descriptors, a line at a time
        # (like a terminal), so that little is lost when an attempt is killed mid-way.
        sys.stdout, sys.stderr = _line_writer(1), _line_writer(2)

    def begin(self) -> None:
        os.dup2(self._pipes[0], 1)
        os.dup2(self._pipes[1], 2)

    def end(self) -> None:
        _flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)


def _line_writer(fd: int) -> TextIO:
    """A text stream on `fd` that it never closes, flushed at every newline."""
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(Exception):  # a stream a handler closed or broke
                stream.flush()
