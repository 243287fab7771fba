"""A self-pipe: lets any thread interrupt a wait on file descriptors."""

from __future__ import annotations

import contextlib
import os
import threading


class WakeUp:
    """`fd` becomes readable after set() and stays so until clear(). set() is thread-safe."""

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        # Without it, a set() racing close() could write to a reused descriptor number.
        self._lock = threading.Lock()
        self._closed = False

    def set(self) -> None:
        with self._lock:
            if self._closed:
                return
            # A full pipe means a wake-up is pending already.
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self.fd)
            os.close(self._write_fd)
