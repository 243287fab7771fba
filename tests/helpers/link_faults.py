"""Faults on links and on workers' standing with the server: links reset, partitioned or
delayed by TcpProxy, a busy worker partitioned until the server declares it dead, busy workers
deregistered through the admin API. See faults.py for the Fault base class.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable

import httpx

from tests.helpers.faults import Fault, Span
from tests.helpers.tcp_proxy import TcpProxy


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
        """Heal the link (if it goes through a proxy) and let other faults have it."""
        proxy = self.proxies.get(name)
        if proxy is not None:
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
        self._kinds: list[str] = []

    def strike(self) -> None:
        name = self._holding = self.links.claim(self.rng)
        if name is None:
            return
        proxy = self.links.proxies[name]
        kind = self._next_kind()
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

    def _next_kind(self) -> str:
        """Each kind once in every three strikes, in a shuffled order: a short run has them all."""
        if not self._kinds:
            self._kinds = ["reset", "partition", "delay"]
            self.rng.shuffle(self._kinds)
        return self._kinds.pop()

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
    are configured in these runs: the API is open). A worker whose link another fault holds is
    left alone: deregistered, a worker partitioned to be declared dead never would be."""

    kind = "deregistrations"

    def __init__(
        self,
        url: str,
        names: list[str],
        links: Links,
        *,
        every_s: Span,
        seed: int,
        token: str | None = None,
    ) -> None:
        super().__init__(every_s, seed)
        self.url, self.names, self.links = url, names, links
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def strike(self) -> None:
        busy = _busy(_workers(self.url), self.names)
        # Held while the call is made, so that no other fault takes this worker meanwhile.
        name = self.links.claim(self.rng, [str(w["name"]) for w in busy])
        if name is None:
            self.counts["deregistrations_no_busy_worker"] += 1
            return
        victim = next(w for w in busy if w["name"] == name)
        try:
            answer = httpx.delete(
                f"{self.url}/api/v1/workers/{victim['id']}", headers=self.headers, timeout=5
            )
        except httpx.HTTPError:
            return  # the server went down meanwhile
        finally:
            self.links.release(name)
        if answer.is_success:
            self.note("workers_deregistered_while_running", worker=victim["name"],
                      worker_id=victim["id"], running=victim["running"])  # fmt: skip
