"""The environments Conveyor builds: a task's, a worker's it starts itself, and the local
workers' token (the processes themselves are tested in tests/e2e/test_task_environment.py)."""

from __future__ import annotations

import os

import pytest

from conveyor.server.auth import Role, TokenEntry
from conveyor.server.local_workers import local_worker_token
from conveyor.worker import WorkerConfig
from conveyor.worker.environment import (
    DEFAULT_PATH,
    parse_env,
    task_environment,
    worker_process_environment,
)
from conveyor.worker.protection import read_token, token_pipe

WORKER_ENV = {
    "PATH": "/opt/bin:/usr/bin",
    "HOME": "/home/w",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "CONVEYOR_TOKEN": "worker-secret",
    "CONVEYOR_TOKENS": "admin:admin-secret",
    "CONVEYOR_DB": "postgresql://u:p@db/x",
    "CONVEYOR_SERVER_PORT": "8000",
    "CONVEYOR_WORKER_CONCURRENCY": "4",
    "PGPASSWORD": "db-secret",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret",
    "HTTPS_PROXY": "http://user:pw@proxy:3128",
    "SHARED": "shared",
}


def test_a_task_gets_the_base_variables_and_nothing_else() -> None:
    assert task_environment(WORKER_ENV) == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/home/w",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }


def test_passed_and_set_variables_come_on_top() -> None:
    environment = task_environment(
        WORKER_ENV, ["SHARED", "ABSENT", "HTTPS_PROXY"], {"MODE": "batch", "HOME": "/tmp"}
    )
    assert environment["SHARED"] == "shared"
    assert environment["HTTPS_PROXY"] == WORKER_ENV["HTTPS_PROXY"]
    assert (environment["MODE"], environment["HOME"]) == ("batch", "/tmp")
    assert "ABSENT" not in environment


def test_a_task_always_has_a_path() -> None:
    assert task_environment({}) == {"PATH": DEFAULT_PATH}


@pytest.mark.parametrize(
    "fields",
    [
        {"pass_env": ("CONVEYOR_TOKEN",)},
        {"pass_env": ("conveyor_db",)},
        {"pass_env": ("",)},
        {"env": {"CONVEYOR_URL": "x"}},
        {"env": {"A=B": "x"}},
        {"env": {"A": "nul\0"}},
    ],
)
def test_a_worker_config_refuses_conveyors_own_variables_and_bad_names(
    fields: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match=r"--pass-env|--env"):
        WorkerConfig(**fields)  # type: ignore[arg-type]


def test_env_items_split_at_the_first_equals_sign() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_env(["NOVALUE"])


def test_workers_conveyor_starts_get_no_secrets_of_conveyor_nor_of_the_database() -> None:
    supervised = worker_process_environment(WORKER_ENV)
    local = worker_process_environment(WORKER_ENV, drop_database=True)
    for gone in ("CONVEYOR_TOKEN", "CONVEYOR_TOKENS", "CONVEYOR_DB", "CONVEYOR_SERVER_PORT"):
        assert gone not in supervised and gone not in local
    assert supervised["CONVEYOR_WORKER_CONCURRENCY"] == "4"  # a worker's own settings stay
    assert supervised["PGPASSWORD"] == "db-secret"  # a supervisor's copies may pass it on
    assert "PGPASSWORD" not in local  # a server's database credentials never reach a worker
    assert local["SHARED"] == "shared"


def test_local_workers_never_get_an_admin_token() -> None:
    admin = TokenEntry(Role.ADMIN, "a" * 20)
    worker = TokenEntry(Role.WORKER, "w" * 20)
    assert local_worker_token([admin, worker]) == ("w" * 20, None)
    assert local_worker_token([]) == (None, None)  # an open API needs none
    token, made = local_worker_token([admin, TokenEntry(Role.CLIENT, "c" * 20)])
    assert made is not None and made.role is Role.WORKER and made.token == token
    assert token not in ("a" * 20, "c" * 20)
    assert local_worker_token([admin])[0] != token  # made anew each time, never stored


def test_a_token_crosses_a_pipe_and_the_pipe_is_closed() -> None:
    fd = token_pipe("tok-123")
    assert read_token(fd) == "tok-123"
    with pytest.raises(OSError):
        os.fstat(fd)
