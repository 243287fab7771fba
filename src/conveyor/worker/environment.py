"""The environment a task's process runs with, and the one Conveyor gives the workers it starts.

A task does not inherit its worker's environment, which may hold the worker's token, the
server's tokens, a database URL, cloud credentials. It gets a minimal one (task_environment):

- the variables a program needs to run at all, as the worker has them: PATH (a default if the
  worker has none), HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR; PYTHONPATH and
  LD_LIBRARY_PATH, which a task's Python may need to start or to import what the worker can;
  SSL_CERT_FILE and SSL_CERT_DIR, where TLS finds the certificates to trust;
- the variables named with `--pass-env NAME`, as the worker has them (absent ones are skipped);
- the variables set with `--env NAME=VALUE` (visible in `ps` on the worker's command line: pass
  secrets with --pass-env instead).

Names starting with CONVEYOR_ configure Conveyor itself and may hold its secrets: they are never
passed, and --pass-env or --env refuse them. Proxy settings (HTTP_PROXY, ...) are not passed by
default either: their URLs may hold credentials; pass them by name if tasks need them.

The workers Conveyor starts itself (`conveyor server --workers N`, the `--processes N`
supervisor) get the starting process's environment without Conveyor's secrets and, from a
server, without its database's credentials (worker_process_environment): a worker never holds
the database URL. Their token reaches them through a pipe (protection.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BASE_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
    "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip
"""Passed to every task from the worker's environment, when the worker has them."""
BASE_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
"""A task's PATH when the worker has none: commands must be found somewhere."""
RESERVED_PREFIX = "CONVEYOR_"

CONVEYOR_SECRETS = ("CONVEYOR_TOKEN", "CONVEYOR_TOKENS", "CONVEYOR_DB")
"""Never handed to a worker process: its token travels apart, the others are the server's."""
SERVER_PREFIX = "CONVEYOR_SERVER_"
"""The server's own settings (`conveyor server`'s options), of no use to a worker."""
DATABASE_PREFIX = "PG"
"""libpq's connection settings (PGPASSWORD, PGPASSFILE, PGUSER, ...): the server's database
credentials, which a worker must never hold."""


def check_pass_env(names: Iterable[str]) -> tuple[str, ...]:
    """The names given to --pass-env, checked; ValueError naming the option otherwise."""
    checked = tuple(names)
    for name in checked:
        _check_name(name, f"--pass-env {name}")
    return checked


def check_env(variables: Mapping[str, str]) -> dict[str, str]:
    """The NAME=VALUE pairs given to --env, checked; ValueError naming the option otherwise."""
    for name, value in variables.items():
        _check_name(name, f"--env {name}")
        if "\0" in value:
            raise ValueError(f"--env {name}: a value may not hold a NUL character")
    return dict(variables)


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """`["A=1", "B=x=y"]` into {"A": "1", "B": "x=y"}; ValueError for an item without `=`."""
    variables: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env {item}: expected NAME=VALUE")
        variables[name] = value
    return check_env(variables)


def _check_name(name: str, where: str) -> None:
    if not name or "=" in name or "\0" in name:
        raise ValueError(f"{where}: not a variable name")
    if name.upper().startswith(RESERVED_PREFIX):
        raise ValueError(
            f"{where}: variables named {RESERVED_PREFIX}* configure Conveyor and may hold its "
            "secrets; they never reach a task"
        )


def task_environment(
    source: Mapping[str, str], pass_env: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a task's process, built from the worker's `source`."""
    environment = {
        name: value
        for name, value in source.items()
        if (name in BASE_VARIABLES or name.startswith(BASE_PREFIXES))
        and not name.startswith(RESERVED_PREFIX)
    }
    environment.setdefault("PATH", DEFAULT_PATH)
    for name in pass_env:
        if name in source and not name.upper().startswith(RESERVED_PREFIX):
            environment[name] = source[name]
    for name, value in (env or {}).items():
        if not name.upper().startswith(RESERVED_PREFIX):
            environment[name] = value
    return environment


def worker_process_environment(
    source: Mapping[str, str], *, drop_database: bool = False
) -> dict[str, str]:
    """The environment of a worker process Conveyor starts: `source` without Conveyor's secrets
    and the server's settings, and with `drop_database`, without libpq's variables."""
    return {
        name: value
        for name, value in source.items()
        if name not in CONVEYOR_SECRETS
        and not name.startswith(SERVER_PREFIX)
        and not (drop_database and name.startswith(DATABASE_PREFIX))
    }
