"""SIGTERM and SIGINT, turned into calls on a helper thread.

A Python signal handler runs on the main thread between two bytecodes, possibly while that
thread holds a lock the handler would need (the pool's wake-up lock, say): a deadlock. So the
handlers do nothing; the C-level handler writes the signal number to a socket
(`signal.set_wakeup_fd`), and a thread reading that socket makes the call.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def relay_stop_signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """While inside, call `on_signal` on a helper thread for each SIGTERM or SIGINT received.

    Must be entered on the main thread (a rule of the signal module).
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _do_nothing) for signum in STOP_SIGNALS}
    relay = threading.Thread(
        target=_relay, args=(reader, on_signal), name="conveyor-signals", daemon=True
    )
    relay.start()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the relay reads end-of-file and returns
        relay.join(timeout=1.0)
        reader.close()


def _do_nothing(signum: int, frame: FrameType | None) -> None:
    """Replaces the default action (die, or KeyboardInterrupt); the relay does the work."""


def _relay(reader: socket.socket, on_signal: Callable[[signal.Signals], None]) -> None:
    stop_numbers = {int(s) for s in STOP_SIGNALS}
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return
        if not data:
            return
        for number in data:
            if number in stop_numbers:
                on_signal(signal.Signals(number))
