"""`conveyor server`: the HTTP server over one database, optionally with local workers."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
import uvicorn
from fastapi import FastAPI

from conveyor.cli.logs import use_log_format
from conveyor.cli.options import (
    DURATION,
    allow_module_option,
    allow_network_option,
    allow_option,
    files_root_option,
    log_format_option,
    store_options,
)
from conveyor.engine import Engine, EngineSettings
from conveyor.errors import ConveyorError
from conveyor.server import ServerSettings, create_app, request_shutdown
from conveyor.server.auth import (
    TokenConfigError,
    TokenEntry,
    Tokens,
    parse_tokens_file,
    parse_tokens_variable,
)
from conveyor.server.local_workers import LocalWorkers, local_worker_token
from conveyor.server.serving import uvicorn_config
from conveyor.store import Durability, is_postgres_url, open_store
from conveyor.worker.environment import worker_process_environment
from conveyor.worker.protection import forbid_inspection

log = logging.getLogger(__name__)

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
TOKENS_VARIABLE = "CONVEYOR_TOKENS"
"""`role:token,role:token`: read here, never a flag, so that no token shows in `ps`."""
GRACEFUL_SHUTDOWN_S = 5
"""How long open requests may take to finish once the server stops (long-polls answer at once)."""


@click.command("server")
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65_535))
@click.option(
    "--workers",
    "worker_count",
    default=0,
    type=click.IntRange(0, 1024),
    help="Also run N worker processes on this machine (the all-in-one mode).",
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Bearer tokens, one `role:token` per line (roles: client, worker, admin); also "
    f"{TOKENS_VARIABLE}=role:token,... Without any, the API is open and listens on loopback only.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow listening on a non-loopback address although no token is configured.",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve HTTPS with this certificate (PEM; may hold the key too).",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The certificate's private key (PEM).",
)
@click.option(
    "--max-wait-s",
    type=click.FloatRange(0, 60),
    default=60.0,
    show_default=True,
    help="Longest a long-poll (a lease's wait_s, a result's ?wait=) is held; lower it behind a "
    "proxy that closes idle connections sooner.",
)
@click.option(
    "--lease-s",
    type=click.FloatRange(min=0, min_open=True),
    help="How long a lease lasts without a heartbeat [default: 30].",
)
@click.option(
    "--heartbeat-s",
    type=click.FloatRange(min=0, min_open=True),
    help="How often workers heartbeat [default: 5, or a third of --lease-s if that is shorter].",
)
@click.option(
    "--worker-grace-s",
    default=35.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="On stop, how long local workers get to drain before they are killed (a worker's own "
    "drain lasts 30 s by default; a second Ctrl-C kills them at once).",
)
@allow_option
@allow_module_option
@allow_network_option
@files_root_option(
    "With --workers: let the local workers run the file handlers (files.*, sha256 path=), "
    "confined to DIR  [default: refuse them]"
)
@click.option(
    "--retention",
    type=DURATION,
    default=None,
    help="Delete finished tasks this long after they end (e.g. 7d, 12h, 3600). Default: keep all.",
)
@click.option(
    "--metrics-queue",
    "metrics_queues",
    multiple=True,
    metavar="NAME|PATTERN",
    help="Report this queue (or fnmatch pattern: 'tenant-*') as itself in /metrics (repeatable). "
    "Other queues show as themselves once a worker serves them, as 'other' until then.",
)
@click.option(
    "--metrics-handler",
    "metrics_handlers",
    multiple=True,
    metavar="NAME|PATTERN",
    help="Report this handler (or pattern: 'myapp.*') as itself in /metrics (repeatable). "
    "Others show as themselves once one of their tasks succeeded (built-ins always do), as "
    "'other' until then.",
)
@log_format_option
def server_command(
    db: str,
    durability: str,
    accept_wal_loss: bool,
    host: str,
    port: int,
    worker_count: int,
    tokens_file: str | None,
    insecure: bool,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    max_wait_s: float,
    lease_s: float | None,
    heartbeat_s: float | None,
    worker_grace_s: float,
    allow: tuple[str, ...],
    allow_modules: tuple[str, ...],
    allow_networks: tuple[str, ...],
    files_root: str | None,
    retention: float | None,
    metrics_queues: tuple[str, ...],
    metrics_handlers: tuple[str, ...],
    log_format: str,
) -> None:
    """Serve the REST API (and /docs) over the database --db.

    With --workers N, also starts N local worker processes that connect to this server, and stops
    them when the server stops.
    """
    use_log_format(log_format)
    entries = load_tokens(tokens_file, os.environ.get(TOKENS_VARIABLE))
    if ssl_keyfile and not ssl_certfile:
        raise click.UsageError("--ssl-keyfile needs --ssl-certfile")
    if not is_loopback(host):
        if not entries and not insecure:
            raise click.UsageError(
                f"refusing to listen on {host!r}: it is not a loopback address and no token is "
                "configured, so anyone who can reach it could run tasks. Configure tokens "
                f"(--tokens-file or {TOKENS_VARIABLE}), pass --insecure to do it anyway (on a "
                "trusted network only), or use --host 127.0.0.1."
            )
        if entries and not ssl_certfile:
            click.echo(
                f"warning: listening on {host} without TLS: tokens cross the network in clear "
                "text. Use --ssl-certfile/--ssl-keyfile, or a TLS proxy in front.",
                err=True,
            )
    settings = engine_settings(lease_s, heartbeat_s, retention)
    try:
        store = open_store(db, durability=Durability(durability), accept_wal_loss=accept_wal_loss)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    engine = Engine(store, settings=settings)
    data_dir = os.getcwd() if is_postgres_url(db) else os.path.dirname(os.path.abspath(db))
    # Local workers authenticate as workers, never as an admin: with no worker token configured,
    # the server makes one for them, and accepts it, in memory only.
    worker_token, made = local_worker_token(entries) if worker_count else (None, None)
    if worker_count:
        # They run as this user: their tasks may not read this process's environment or memory.
        forbid_inspection()
    server_settings = ServerSettings(
        host=host,
        port=port,
        disk_path=data_dir,
        tokens=Tokens([*entries, made] if made else entries),
        max_wait_s=max_wait_s,
        metrics_queues=metrics_queues,
        metrics_handlers=metrics_handlers,
    )
    app = create_app(engine, server_settings)
    workers = LocalWorkers(
        worker_count,
        [
            *worker_args(allow, allow_modules, files_root, allow_networks),
            "--log-format",
            log_format,
        ],
        cli_args=["-v"] * verbosity(),
        grace_s=worker_grace_s,
        # Without the server's tokens, database URL and database credentials; the token goes
        # through a pipe.
        env=worker_process_environment(os.environ, drop_database=True),
        token=worker_token,
    )
    config = uvicorn_config(
        app,
        host=host,
        port=port,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        heartbeat_interval_s=settings.heartbeat_interval_s,  # keep-alive outlasts it
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        max_body_bytes=server_settings.max_body_bytes,
    )
    server = _Server(config, app, workers, on_stopped=store.close)
    try:
        server.run()
    finally:  # also after a failed start-up; both are idempotent
        workers.stop()
        store.close()


class _Server(uvicorn.Server):
    """uvicorn's server, plus local workers: started once it listens, stopped before it stops."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        workers: LocalWorkers,
        *,
        on_stopped: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self.app = app
        self.workers = workers
        self.on_stopped = on_stopped
        self._stopping = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        url = self.url()
        click.echo(f"Conveyor server at {url}  (API docs: {url}/docs; Ctrl-C to stop)", err=True)
        self.workers.start(url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # Clean up here: after a signal, uvicorn raises it again once run() ends, and SIGTERM's
        # default action ends the process before any code after run() could.
        self.workers.stop()
        self.on_stopped()

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:
            self.workers.check()
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread when a signal arrives. Local workers stop first, while the
        # server still answers their last reports; a second signal kills them and exits now.
        if self._stopping or not self.workers.alive:
            self.workers.kill()
            self._exit(sig, frame)
            return
        self._stopping = True
        click.echo("stopping local workers ...", err=True)
        threading.Thread(
            target=self._stop_workers_then_exit, args=(sig, frame), name="stop-workers"
        ).start()

    def _stop_workers_then_exit(self, sig: int, frame: FrameType | None) -> None:
        self.workers.stop()
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        request_shutdown(self.app)  # waiting long-polls answer now
        super().handle_exit(sig, frame)

    def url(self) -> str:
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        scheme = "https" if self.config.is_ssl else "http"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"{scheme}://{host}:{port}"
        if address.is_unspecified:  # listening everywhere: reach it over loopback
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{scheme}://{host}:{port}"


def load_tokens(tokens_file: str | None, variable: str | None) -> list[TokenEntry]:
    """The tokens of --tokens-file and of CONVEYOR_TOKENS, together; a clear error otherwise."""
    entries: list[TokenEntry] = []
    try:
        if tokens_file is not None:
            try:
                text = Path(tokens_file).read_text(encoding="utf-8")
                mode = os.stat(tokens_file).st_mode
            except (OSError, UnicodeDecodeError) as exc:
                raise TokenConfigError(
                    f"cannot read the tokens file {tokens_file}: {exc}"
                ) from None
            entries += parse_tokens_file(text, tokens_file)
            if not entries:
                raise TokenConfigError(f"the tokens file {tokens_file} holds no token")
            if mode & 0o077:
                click.echo(
                    f"warning: {tokens_file} can be read by other users; `chmod 600` it.", err=True
                )
        if variable:
            entries += parse_tokens_variable(variable, TOKENS_VARIABLE)
        if len({e.token for e in entries}) < len(entries):
            raise TokenConfigError(
                f"a token is given both in {tokens_file} and in {TOKENS_VARIABLE}"
            )
    except TokenConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--tokens-file/" + TOKENS_VARIABLE) from None
    return entries


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def engine_settings(
    lease_s: float | None, heartbeat_s: float | None, retention_s: float | None = None
) -> EngineSettings:
    defaults = EngineSettings()
    lease = lease_s if lease_s is not None else defaults.lease_s
    heartbeat = (
        heartbeat_s if heartbeat_s is not None else min(defaults.heartbeat_interval_s, lease / 3)
    )
    # Declared dead after as many missed heartbeats as by default (20 s at 5 s: four).
    dead_after = defaults.worker_dead_after_s * heartbeat / defaults.heartbeat_interval_s
    try:
        return EngineSettings(
            lease_s=lease,
            heartbeat_interval_s=heartbeat,
            worker_dead_after_s=dead_after,
            retention_s=retention_s,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lease-s/--heartbeat-s") from None


def worker_args(
    allow: tuple[str, ...],
    allow_modules: tuple[str, ...],
    files_root: str | None = None,
    allow_networks: tuple[str, ...] = (),
) -> list[str]:
    """The handler policy of `conveyor server --workers N`, as each local worker's options."""
    args: list[str] = []
    for family in allow:
        args += ["--allow", family]
    for prefix in allow_modules:
        args += ["--allow-module", prefix]
    for network in allow_networks:
        args += ["--allow-network", network]
    if files_root is not None:
        args += ["--files-root", files_root]
    return args


def verbosity() -> int:
    """The -v count the CLI was started with, read back from the logging level it set."""
    level = logging.getLogger().getEffectiveLevel()
    return 2 if level <= logging.DEBUG else 1 if level <= logging.INFO else 0
