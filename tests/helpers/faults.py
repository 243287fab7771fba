"""Fault injectors for the chaos runs: each a thread that strikes now and then until stopped,
and counts what it did, so that a run can say how many faults of each kind it survived.

Every fault is real: processes are sent SIGKILL, PostgreSQL backends are terminated, and a disk
fills up; link_faults.py has the faults on links (through a TcpProxy that resets, partitions or
delays them) and on workers' standing with the server (declared dead, deregistered). `stop()`
ends the strikes and heals whatever is still broken, so that the run can then check that
everything settles.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Span = tuple[float, float]
"""Seconds, drawn uniformly between the two."""


class Timeline:
    """Every fault as it strikes, one JSON line each with the wall-clock time, in `path`: what
    to read next to the servers' and workers' logs when a run finds something."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, event: str, **fields: object) -> None:
        line = {"at": datetime.now(UTC).isoformat(), "event": event, **fields}
        with self._lock:
            self._file.write(json.dumps(line, default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class Bursts:
    """Alternating windows, on for a time drawn from `on_s`, then quiet for one from `off_s`,
    from the first call on. Faults that share one Bursts strike only in its on windows, all
    together, as an outage comes and goes: the quiet windows let the work go on, so that the
    other faults strike tasks in progress."""

    def __init__(self, on_s: Span, off_s: Span, seed: int) -> None:
        self.on_s, self.off_s = on_s, off_s
        self._rng = random.Random(seed)
        self._windows: list[tuple[float, float]] = []  # (on until, quiet until), in order
        self._lock = threading.Lock()

    def quiet_for_s(self) -> float:
        """0 in an on window; in a quiet one, how long until the next on window."""
        now = time.monotonic()
        with self._lock:
            if not self._windows:
                self._windows.append(self._window(now))
            while self._windows[-1][1] <= now:
                self._windows.append(self._window(self._windows[-1][1]))
            on_until, quiet_until = next(w for w in self._windows if w[1] > now)
        return 0.0 if now < on_until else quiet_until - now

    @property
    def windows(self) -> int:
        """On windows begun so far."""
        return len(self._windows)

    def _window(self, start: float) -> tuple[float, float]:
        on_until = start + self._rng.uniform(*self.on_s)
        return on_until, on_until + self._rng.uniform(*self.off_s)


class Fault:
    """Strikes every `every_s` (drawn anew each time) on a thread of its own, until stop();
    given `bursts`, only in their on windows."""

    kind = "fault"
    timeline: Timeline | None = None
    bursts: Bursts | None = None

    def __init__(self, every_s: Span, seed: int) -> None:
        self.every_s = every_s
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        """What went wrong in the injector itself: a run with any is not a valid run."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fault-{self.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float = 30) -> None:
        """Wait for the strike in progress to end and heal what it broke."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.errors.append(f"{self.kind} did not stop within {timeout_s}s")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pause(self, span: Span) -> bool:
        """Wait a time drawn from `span`; False if stopped meanwhile."""
        return not self._stop.wait(self.rng.uniform(*span))

    def _run(self) -> None:
        while self.pause(self.every_s):
            quiet_s = self.bursts.quiet_for_s() if self.bursts is not None else 0.0
            if quiet_s > 0:
                self._stop.wait(quiet_s)
                continue
            try:
                self.strike()
            except Exception as exc:
                self.errors.append(f"{self.kind}: {exc!r}")
            finally:
                self.heal()
        self.heal()

    def note(self, event: str, count: int = 1, **fields: object) -> None:
        """Count `event` and put it on the timeline."""
        self.counts[event] += count
        if self.timeline is not None:
            self.timeline.record(event, count=count, **fields)

    def strike(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        """Undo what a strike left broken (called after every strike, and at the end)."""


# ---- processes -------------------------------------------------------------------------------


class WorkerKills(Fault):
    """SIGKILL a random worker with its process group (its tasks die with it); restart it."""

    kind = "worker_kills"

    def __init__(
        self,
        names: list[str],
        kill: Callable[[str], None],
        restart: Callable[[str], None],
        *,
        every_s: Span,
        seed: int,
    ) -> None:
        super().__init__(every_s, seed)
        self.names, self.kill, self.restart = names, kill, restart

    def strike(self) -> None:
        victim = self.rng.choice(self.names)
        self.kill(victim)
        self.note("worker_kills", worker=victim)
        self.restart(victim)


class ServerKills(Fault):
    """SIGKILL the server at the given moments (seconds after start) and restart it on the same
    port and database after `down_s`."""

    kind = "server_kills"

    def __init__(
        self,
        at_s: list[float],
        kill: Callable[[], None],
        restart: Callable[[], int],
        *,
        down_s: float,
        seed: int,
    ) -> None:
        super().__init__((0, 0), seed)
        self.at_s, self.kill, self.restart, self.down_s = sorted(at_s), kill, restart, down_s

    def _run(self) -> None:
        waited = 0.0
        for at in self.at_s:
            if self._stop.wait(at - waited):
                return
            waited = at
            try:
                self.kill()
                self.note("server_kills")
                self._stop.wait(self.down_s)  # down a moment: its clients must notice
                self.note("server_start_retries", self.restart())
            except Exception as exc:
                self.errors.append(f"server kill: {exc!r}")


# ---- the database ----------------------------------------------------------------------------


class BackendTerminations(Fault):
    """pg_terminate_backend() of every connection a server opened (found by its
    application_name), as a PostgreSQL restart or an administrator would."""

    kind = "db_terminations"
    ADMIN_APPLICATION = "conveyor-chaos-admin"

    def __init__(self, base_url: str, application_name: str, *, every_s: Span, seed: int) -> None:
        super().__init__(every_s, seed)
        self.base_url, self.application_name = base_url, application_name

    def strike(self) -> None:
        import psycopg

        with psycopg.connect(
            self.base_url, autocommit=True, application_name=self.ADMIN_APPLICATION
        ) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (self.application_name,),
            ).fetchall()
        self.note("db_terminations", sum(1 for (done,) in rows if done))
        self.counts["db_termination_rounds"] += 1


class DiskFull(Fault):
    """Fill the file system holding `directory` (a small tmpfs) to the last byte with a file,
    hold it full for `full_s`, then delete the file."""

    kind = "disk_full"
    CHUNK_BYTES = 1024 * 1024

    def __init__(self, directory: Path, *, every_s: Span, full_s: Span, seed: int) -> None:
        super().__init__(every_s, seed)
        self.filler = directory / "filler"
        self.full_s = full_s

    def strike(self) -> None:
        with self.filler.open("wb") as f:
            filled = _fill(f.fileno(), self.CHUNK_BYTES)
        self.note("disk_full_periods", filled_mb=filled // (1024 * 1024))
        self.pause(self.full_s)
        if self.timeline is not None:
            self.timeline.record("disk_freed")

    def heal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


def _fill(fd: int, chunk_bytes: int) -> int:
    """Write until the file system has no byte left; returns the bytes written."""
    written = 0
    size = chunk_bytes
    while size >= 1:
        try:
            written += os.write(fd, b"\0" * size)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            size //= 2
    return written
