"""Fault injectors for the chaos runs: each a thread that strikes now and then until stopped,
and counts what it did, so that a run can say how many faults of each kind it survived.

Every fault is real: processes are sent SIGKILL, PostgreSQL backends are terminated, links go
through a TcpProxy that resets, partitions or delays them, workers are deregistered through the
admin API, and a disk fills up. `stop()` ends the strikes and heals whatever is still broken, so
that the run can then check that everything settles.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.helpers.tcp_proxy import TcpProxy

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


class Fault:
    """Strikes every `every_s` (drawn anew each time) on a thread of its own, until stop()."""

    kind = "fault"
    timeline: Timeline | None = None

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


# ---- the network -----------------------------------------------------------------------------


class Links:
    """Named proxies that faults share: a link one fault holds is left alone by the others."""

    def __init__(self, proxies: dict[str, TcpProxy]) -> None:
        self.proxies = proxies
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, rng: random.Random, among: Iterable[str] | None = None) -> str | None:
        with self._lock:
            free = sorted(set(among if among is not None else self.proxies) - self._held)
            if not free:
                return None
            name = rng.choice(free)
            self._held.add(name)
            return name

    def release(self, name: str) -> None:
        proxy = self.proxies[name]
        proxy.end_resetting()
        proxy.heal()
        proxy.set_delay(0)
        with self._lock:
            self._held.discard(name)


class LinkFaults(Fault):
    """On a random link of `links`: a period of resets (every open connection and every new one
    gets an RST), of partition (nothing forwarded, nothing lost), or of added delay."""

    kind = "link_faults"

    def __init__(
        self,
        label: str,
        links: Links,
        *,
        every_s: Span,
        reset_s: Span = (0.2, 1.0),
        partition_s: Span = (0.3, 2.0),
        delay_s: Span = (1.0, 3.0),
        delay_each_s: Span = (0.02, 0.3),
        seed: int,
    ) -> None:
        self.kind = f"{label}_faults"
        super().__init__(every_s, seed)
        self.label, self.links = label, links
        self.reset_s, self.partition_s = reset_s, partition_s
        self.delay_s, self.delay_each_s = delay_s, delay_each_s
        self._holding: str | None = None

    def strike(self) -> None:
        name = self._holding = self.links.claim(self.rng)
        if name is None:
            return
        proxy = self.links.proxies[name]
        kind = self.rng.choice(("reset", "partition", "delay"))
        if kind == "reset":
            self.note(f"{self.label}_reset_periods", link=name)
            reset = proxy.begin_resetting()
            self.pause(self.reset_s)
            self.counts[f"{self.label}_connections_reset"] += reset + proxy.reset()
        elif kind == "partition":
            proxy.partition()
            self.note(f"{self.label}_partitions", link=name)
            self.pause(self.partition_s)
        else:
            delay_s = round(self.rng.uniform(*self.delay_each_s), 3)
            proxy.set_delay(delay_s)
            self.note(f"{self.label}_delay_periods", link=name, delay_s=delay_s)
            self.pause(self.delay_s)

    def heal(self) -> None:
        if self._holding is not None:
            self.links.release(self._holding)
            if self.timeline is not None:
                self.timeline.record(f"{self.label}_healed", link=self._holding)
            self._holding = None


# ---- workers, through the API ----------------------------------------------------------------


def _workers(url: str) -> list[dict[str, object]]:
    try:
        answer = httpx.get(f"{url}/api/v1/workers", timeout=5)
        answer.raise_for_status()
        workers: list[dict[str, object]] = answer.json()["workers"]
        return workers
    except (httpx.HTTPError, ValueError, KeyError):
        return []  # the server is down or its database is: try again next time


def _busy(workers: list[dict[str, object]], among: Iterable[str]) -> list[dict[str, object]]:
    names = set(among)
    return [w for w in workers if w["state"] == "alive" and w["running"] and w["name"] in names]


class DeadWhileRunning(Fault):
    """Partition one busy worker from the server for longer than the server's dead-worker time:
    wait until the server declares it dead with tasks still leased to it, hold the partition
    until those leases ran out (so its tasks run again elsewhere), then heal."""

    kind = "dead_while_running"

    def __init__(
        self,
        url: str,
        links: Links,
        *,
        dead_after_s: float,
        lease_s: float,
        every_s: Span,
        seed: int,
    ) -> None:
        super().__init__(every_s, seed)
        self.url, self.links = url, links
        self.dead_after_s, self.lease_s = dead_after_s, lease_s
        self._holding: str | None = None

    def strike(self) -> None:
        busy = _busy(_workers(self.url), self.links.proxies)
        name = self._holding = self.links.claim(self.rng, [str(w["name"]) for w in busy])
        if name is None:
            self.counts["dead_while_running_no_busy_worker"] += 1
            return
        worker = next(w for w in busy if w["name"] == name)
        worker_id = str(worker["id"])
        self.links.proxies[name].partition()
        self.note("worker_long_partitions", worker=name, worker_id=worker_id,
                  running=worker["running"])  # fmt: skip
        # Heartbeats stop reaching the server now; it must declare the worker dead soon after
        # dead_after_s (its timers run a few times a second). Poll for it with a deadline.
        deadline_s = self.dead_after_s + 4 * self.lease_s + 5
        if self._until(lambda: self._state(worker_id) == "dead", deadline_s):
            self.note("workers_declared_dead_while_running", worker=name, worker_id=worker_id)
            self.pause((self.lease_s + 0.5, self.lease_s + 0.5))  # its leases run out
        else:
            self.note("long_partitions_never_declared_dead", worker=name, worker_id=worker_id)

    def _state(self, worker_id: str) -> str | None:
        try:
            answer = httpx.get(f"{self.url}/api/v1/workers/{worker_id}", timeout=2)
            return str(answer.json()["state"]) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def _until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        waited = 0.0
        while waited < timeout_s:
            if condition():
                return True
            if self._stop.wait(0.1):
                return False
            waited += 0.1
        return False

    def heal(self) -> None:
        if self._holding is not None:
            self.links.release(self._holding)
            if self.timeline is not None:
                self.timeline.record("worker_long_partition_healed", worker=self._holding)
            self._holding = None


class Deregistrations(Fault):
    """DELETE /api/v1/workers/{id} of a worker with tasks running, as an admin would (no tokens
    are configured in these runs: the API is open)."""

    kind = "deregistrations"

    def __init__(
        self, url: str, names: list[str], *, every_s: Span, seed: int, token: str | None = None
    ) -> None:
        super().__init__(every_s, seed)
        self.url, self.names = url, names
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def strike(self) -> None:
        busy = _busy(_workers(self.url), self.names)
        if not busy:
            self.counts["deregistrations_no_busy_worker"] += 1
            return
        victim = self.rng.choice(busy)
        try:
            answer = httpx.delete(
                f"{self.url}/api/v1/workers/{victim['id']}", headers=self.headers, timeout=5
            )
        except httpx.HTTPError:
            return  # the server went down meanwhile
        if answer.is_success:
            self.note("workers_deregistered_while_running", worker=victim["name"],
                      worker_id=victim["id"], running=victim["running"])  # fmt: skip
