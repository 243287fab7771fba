"""`conveyor worker`: run tasks from a server until stopped (SIGTERM/Ctrl-C drain it)."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

import click

from conveyor.cli.logs import use_log_format
from conveyor.cli.options import (
    allow_module_option,
    allow_network_option,
    allow_option,
    files_root_option,
    handler_policy,
    log_format_option,
    server_option,
    token_option,
)
from conveyor.cli.remote import parse_pairs
from conveyor.core.spec import QUEUE_PATTERN
from conveyor.errors import ConveyorError
from conveyor.worker import Worker, WorkerConfig, protection
from conveyor.worker.environment import parse_env, worker_process_environment

_RESOURCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})=(\d+(?:\.\d+)?)$")


def _resources(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, float]:
    """`gpu=1,memory_mb=2048` into {"gpu": 1.0, "memory_mb": 2048.0}."""
    resources: dict[str, float] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        match = _RESOURCE.match(item.strip())
        if not match:
            raise click.BadParameter(
                f"{item.strip()!r} is not NAME=AMOUNT (for example gpu=1)", ctx, param
            )
        resources[match.group(1)] = float(match.group(2))
    return resources


def _queues(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    queues = tuple(dict.fromkeys(q.strip() for q in value.split(",") if q.strip()))
    if not queues:
        raise click.BadParameter("name at least one queue", ctx, param)
    for queue in queues:
        if not re.fullmatch(QUEUE_PATTERN, queue):
            raise click.BadParameter(
                f"{queue!r} is not a queue name (letters, digits, _ . : -)", ctx, param
            )
    return queues


@click.command("worker")
@server_option
@token_option
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks run at once  [default: one per CPU]",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    help="Tasks leased beyond the free slots, so the next task is here when one ends  "
    "[default: by the tasks' length, about 20 ms of work, 1 to 32; 0: none]",
)
@click.option(
    "--queues",
    default="default",
    show_default=True,
    callback=_queues,
    help="Comma-separated queues to take tasks from.",
)
@click.option(
    "--resources",
    default=None,
    metavar="NAME=AMOUNT,...",
    callback=_resources,
    help="Override advertised resources: gpu=1,memory_mb=2048  [default: this host's cpu, memory_mb, gpu]",
)
@click.option(
    "--prefetch-hold-s",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Hand a prefetched task back when every slot stays busy this long, so that an idle "
    "worker runs it.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Advertise this label (repeatable, or comma-separated): tasks may require or prefer "
    "it (zone=eu).",
)
@click.option("--name", default=None, help="Worker name  [default: hostname-pid]")
@click.option("--burst", is_flag=True, help="Exit once no task is left to lease and none runs.")
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Supervise N worker processes on this host, named NAME-1..NAME-N, restarting any that "
    "dies; SIGTERM drains them all. 0: this process is the worker.",
)
@click.option(
    "--grace-s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/Ctrl-C, seconds running tasks get before they are handed back.",
)
@click.option(
    "--memory-limit-mb",
    type=click.IntRange(min=1),
    default=None,
    help="Address-space limit of each task's child process (RLIMIT_AS)  [default: none]",
)
@click.option(
    "--ledger",
    "ledger_dir",
    envvar="CONVEYOR_LEDGER_DIR",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Append each execution's start and end to DIR/<name>-<pid>.jsonl "
    "(python -m conveyor.ledger check reads them).",
)
@allow_option
@allow_module_option
@allow_network_option
@files_root_option(
    "Run the file handlers (files.*, sha256 path=), confined to DIR  [default: refuse them]"
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Give tasks this variable of the worker's environment too (repeatable). Tasks get "
    "only PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR, PYTHONPATH, LD_LIBRARY_PATH, "
    "SSL_CERT_FILE, SSL_CERT_DIR otherwise, and never CONVEYOR_*.",
)
@click.option(
    "--env",
    "set_env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set this variable for every task (repeatable; shows in `ps`: pass secrets with "
    "--pass-env).",
)
@click.option(
    "--token-fd",
    type=click.IntRange(min=0),
    default=None,
    metavar="FD",
    help="Read the token from this inherited file descriptor (how Conveyor hands its own "
    "workers theirs: out of the environment and of `ps`).",
)
@log_format_option
def worker_command(
    server: str,
    token: str | None,
    concurrency: int | None,
    prefetch: int | None,
    prefetch_hold_s: float,
    labels: tuple[str, ...],
    queues: tuple[str, ...],
    resources: dict[str, float],
    name: str | None,
    burst: bool,
    processes: int,
    grace_s: float,
    memory_limit_mb: int | None,
    ledger_dir: str | None,
    allow: tuple[str, ...],
    allow_modules: tuple[str, ...],
    allow_networks: tuple[str, ...],
    files_root: str | None,
    pass_env: tuple[str, ...],
    set_env: tuple[str, ...],
    token_fd: int | None,
    log_format: str,
) -> None:
    """Lease tasks from a Conveyor server and run them in child processes.

    Only built-in handlers run unless you allow more: --allow-module myapp runs functions
    defined in `myapp.*` modules, importable from the working directory; the http handler
    reaches only public addresses unless --allow-network opens a network or host. Tasks get a
    minimal environment, not the worker's (see --pass-env).
    """
    use_log_format(log_format)
    # Before anything holds a secret: other processes of this user (the tasks) may not read
    # this one's environment or memory.
    protection.forbid_inspection()
    # A worker is a long-running service: say what it does, even without -v.
    worker_log = logging.getLogger("conveyor.worker")
    if worker_log.getEffectiveLevel() > logging.INFO:
        worker_log.setLevel(logging.INFO)
    # Like `python -m`: the project in the working directory is importable by handlers.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if token_fd is not None:
            token = protection.read_token(token_fd)
        config = WorkerConfig(
            server_url=server,
            token=token,
            name=name,
            concurrency=concurrency,
            prefetch=prefetch,
            prefetch_hold_s=prefetch_hold_s,
            labels=parse_pairs(labels, "--label"),
            queues=queues,
            resources=resources,
            burst=burst,
            grace_s=grace_s,
            memory_limit_mb=memory_limit_mb,
            ledger_dir=ledger_dir,
            policy=handler_policy(allow, allow_modules, files_root, allow_networks),
            pass_env=pass_env,
            env=parse_env(set_env),
        )
        if processes:
            status = supervise(processes, config, log_format)
        else:
            worker = Worker(config)  # reads what it needs of the environment (proxies) first
            protection.use_task_environment(worker.task_environment())
            status = worker.run(handle_signals=True)
    except (ConveyorError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)


def supervise(processes: int, config: WorkerConfig, log_format: str = "text") -> int:
    """`--processes N`: run N copies of this worker command (conveyor.worker.supervisor)."""
    from conveyor.worker.supervisor import Supervisor, worker_argv

    base_name = config.name or socket.gethostname()
    verbose = ["-v"] * (2 if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else 0)
    python = [sys.executable, "-m", "conveyor", *verbose]
    supervisor = Supervisor(
        processes,
        lambda index: [
            *python,
            *worker_argv(config, index=index, base_name=base_name),
            *("--log-format", log_format),
        ],
        # The copies get their token through a pipe, not in their environment.
        env=worker_process_environment(os.environ),
        token=config.token,
        stop_timeout_s=config.grace_s + config.shutdown_flush_s + 5,
    )
    return supervisor.run(handle_signals=True)
