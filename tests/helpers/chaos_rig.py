"""The stage a chaos run plays on: a server and workers (conveyor.testing.Cluster), with a TCP
proxy on every link a fault needs to break, a small tmpfs under a SQLite database that a fault
fills, and the fault injectors themselves, built from the run's configuration.

```
 submitters ──client proxy──▶ server ──db proxy──▶ PostgreSQL   (or SQLite on a small tmpfs)
 worker i ──worker i's proxy──┘
```
Each worker has a proxy of its own, so that one worker alone can be partitioned.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.testing import Cluster, ServerExitedError, free_port
from tests.helpers.faults import (
    BackendTerminations,
    Bursts,
    DiskFull,
    Fault,
    ServerKills,
    Timeline,
    WorkerKills,
)
from tests.helpers.link_faults import DeadWhileRunning, Deregistrations, LinkFaults, Links
from tests.helpers.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.helpers.chaos import ChaosConfig

POSTGRES_ONLY = frozenset({"db_terminations", "db_link"})
SQLITE_ONLY = frozenset({"disk_full"})
SERVER_START_ATTEMPTS = 5


def is_postgres(db: str | None) -> bool:
    return bool(db) and str(db).startswith(("postgres://", "postgresql://"))


def dead_after_s(lease_s: float) -> float:
    """The worker dead-after time `conveyor server --lease-s` derives (cli/server.py
    engine_settings): heartbeats every min(5, lease/3) s, dead after four of them missed."""
    heartbeat_s = min(5.0, lease_s / 3)
    return 20.0 * heartbeat_s / 5.0


@dataclass
class Rig:
    config: ChaosConfig
    directory: Path
    cwd: Path
    skipped: dict[str, str] = field(default_factory=dict)
    """Faults asked for that this run cannot inject, with the reason."""
    cluster: Cluster = field(init=False)
    worker_names: list[str] = field(init=False)
    worker_links: Links = field(init=False)
    client_links: Links = field(init=False)
    db_links: Links = field(init=False)
    application_name: str = field(init=False)
    server_port: int = field(init=False)
    """Chosen before the server starts, so that the proxies can point at it."""
    disk_dir: Path | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def faults(self) -> frozenset[str]:
        return frozenset(self.config.faults) - set(self.skipped)

    @property
    def store(self) -> str:
        return "postgresql" if is_postgres(self.config.db) else "sqlite"

    # ---- set up and tear down ------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def built(cls, directory: Path, config: ChaosConfig, cwd: Path) -> Iterator[Rig]:
        rig = cls(config, directory, cwd)
        with rig._stack:
            rig._set_up()
            yield rig

    def _set_up(self) -> None:
        wanted = frozenset(self.config.faults)
        other_store = SQLITE_ONLY if self.store == "postgresql" else POSTGRES_ONLY
        for kind in sorted(wanted & other_store):
            self.skipped[kind] = f"not a fault of {self.store}"
        self.application_name = f"conveyor-chaos-{uuid.uuid4().hex[:12]}"
        self.server_port = free_port()
        db = self._database()
        self.cluster = Cluster(self.directory, db=db, lease_s=self.config.lease_s, cwd=self.cwd)
        self._stack.callback(self.cluster.stop)  # before the proxies and the tmpfs go
        self.worker_names = [f"chaos-w{i}" for i in range(self.config.workers)]
        self.worker_links = self._links(
            self.worker_names if wanted & {"worker_link", "dead_while_running"} else [],
            self.server_port,
        )
        self.client_links = self._links(
            ["clients"] if "client_link" in wanted else [], self.server_port
        )

    def _database(self) -> str | None:
        """The database URL the server gets: through a proxy, with an application_name that
        finds its connections, on PostgreSQL; on a small tmpfs, on SQLite, if it is to fill."""
        db = self.config.db
        self.db_links = Links({})
        if is_postgres(db):
            assert db is not None
            if "db_link" in self.faults:
                parts = urlsplit(db)
                proxy = self._proxy("db", parts.hostname or "127.0.0.1", parts.port or 5432)
                self.db_links = Links({"db": proxy})
                db = urlunsplit(parts._replace(netloc=_with_port(parts, proxy.port)))
            return _with_query(db, application_name=self.application_name)
        if "disk_full" not in self.faults:
            return db
        disk = self.directory / "disk"
        disk.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.config.disk_mb}m", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            self.skipped["disk_full"] = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
            return db
        self._stack.callback(subprocess.run, ["umount", "-l", str(disk)], check=False)
        self._stack.callback(_keep_database, disk, self.directory)  # before it is unmounted
        self.disk_dir = disk
        return str(disk / "conveyor.db")

    def _proxy(self, name: str, host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port, name=f"proxy-{name}").start()
        self._stack.callback(proxy.stop)
        return proxy

    def _links(self, names: list[str], port: int) -> Links:
        return Links({name: self._proxy(name, "127.0.0.1", port) for name in names})

    # ---- the cluster ---------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start_server(port=self.server_port)
        for name in self.worker_names:
            self.start_worker(name)

    @property
    def url(self) -> str:
        """The server, directly: for the harness's own reads."""
        return self.cluster.url

    def url_for(self, links: Links, name: str) -> str:
        proxy = links.proxies.get(name)
        return f"http://127.0.0.1:{proxy.port}" if proxy else self.url

    def start_worker(self, name: str) -> None:
        c = self.config
        args = ["--ledger", str(self.directory / "ledger"), "--prefetch", str(c.prefetch),
                "--grace-s", "1"]  # fmt: skip
        self.cluster.start_worker(
            name,
            concurrency=c.concurrency,
            allow_modules=("tests",),
            server=self.url_for(self.worker_links, name),
            extra_args=args,
            wait=False,
        )

    def kill_worker(self, name: str) -> None:
        self.cluster.kill(self.cluster.workers[name])

    def restart_server(self) -> int:
        """Start the server again on its port; returns the failed attempts before it stayed up
        (one can exit at start-up while its database is unreachable)."""
        for failed in range(SERVER_START_ATTEMPTS):
            try:
                self.cluster.start_server(0)
                return failed
            except ServerExitedError:
                continue
        raise AssertionError(f"the server did not start in {SERVER_START_ATTEMPTS} attempts")

    # ---- the faults ----------------------------------------------------------------------------

    def fault_injectors(self) -> list[Fault]:
        """One injector per fault kind this run injects, each with a seed of its own."""
        c, kinds, seed = self.config, self.faults, self.config.seed
        timeline = Timeline(self.directory / "faults.jsonl")
        self._stack.callback(timeline.close)
        built: list[Fault] = []
        if "worker_kills" in kinds:
            every_s = (c.kill_every_s, c.kill_every_s)
            built.append(
                WorkerKills(self.worker_names, self.kill_worker, self.start_worker,
                            every_s=every_s, seed=seed + 1)
            )  # fmt: skip
        if "server_kills" in kinds and c.server_kills:
            # Spread over the submissions, so that every kill lands while work is coming in.
            at_s = [c.submit_s * (i + 1) / (c.server_kills + 1) for i in range(c.server_kills)]
            built.append(
                ServerKills(at_s, self.cluster.kill_server, self.restart_server,
                            down_s=c.server_down_s, seed=seed + 2)
            )  # fmt: skip
        if "db_terminations" in kinds:
            built.append(
                BackendTerminations(_without_query(str(c.db)), self.application_name,
                                    every_s=c.db_terminate_every_s, seed=seed + 3)
            )  # fmt: skip
        if "db_link" in kinds:
            built.append(LinkFaults("db", self.db_links, every_s=c.db_link_every_s, seed=seed + 4))
        if "worker_link" in kinds:
            built.append(
                LinkFaults("worker", self.worker_links, every_s=c.worker_link_every_s,
                           seed=seed + 5)
            )  # fmt: skip
        if "client_link" in kinds:
            built.append(
                LinkFaults("client", self.client_links, every_s=c.client_link_every_s,
                           seed=seed + 6)
            )  # fmt: skip
        if "dead_while_running" in kinds:
            built.append(
                DeadWhileRunning(self.url, self.worker_links, dead_after_s=dead_after_s(c.lease_s),
                                 lease_s=c.lease_s, every_s=c.dead_worker_every_s, seed=seed + 7)
            )  # fmt: skip
        if "deregistrations" in kinds:
            built.append(
                Deregistrations(self.url, self.worker_names, self.worker_links,
                                every_s=c.deregister_every_s, seed=seed + 8)
            )  # fmt: skip
        if "disk_full" in kinds and self.disk_dir is not None:
            built.append(
                DiskFull(self.disk_dir, every_s=c.disk_full_every_s, full_s=c.disk_full_s,
                         seed=seed + 9)
            )  # fmt: skip
        # The database's faults come in bursts, together: an outage that comes and goes.
        db_bursts = Bursts(*c.db_fault_bursts, seed=seed + 10) if c.db_fault_bursts else None
        for fault in built:
            fault.timeline = timeline
            if isinstance(fault, BackendTerminations) or fault.kind == "db_faults":
                fault.bursts = db_bursts
        return built


def _keep_database(disk: Path, directory: Path) -> None:
    """Copy the SQLite database off the tmpfs, so that a run's database outlives it."""
    for path in disk.glob("conveyor.db*"):
        shutil.copy2(path, directory / path.name)


def _with_port(parts: SplitResult, port: int) -> str:
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))
