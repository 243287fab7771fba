"""What a task's process can find of the secrets of the processes that run it.

Real processes: `conveyor server --workers 1`, a `conveyor worker --processes 1` supervisor and
a plain `conveyor worker`, each started with tokens, a database URL and a password in its
environment. A task reports its own environment (as Python, the kernel and a command it runs
see it) and the environment and command line of each ancestor; none of the secrets may be in
the task's, in its parent's (the executor's fork server) or in its worker's.

The tests run as root, who may read any process's /proc files: that a task running as the
workers' own (non-root) user cannot read a worker's or server's environment rests on their not
being dumpable, which shows here as the owner group of /proc/<pid>/environ (root's, not the
process's own) when the process runs with another group.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from conveyor.client import Client
from conveyor.core.states import TaskState
from conveyor.testing import free_port, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REPORT = "tests.helpers.tasks:environment_report"
OTHER_GID = 65534
"""The group the servers and workers run as here: a process's /proc files belong to its group
while it is dumpable, and to root's once it is not."""
BASE = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
        "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR"}  # fmt: skip


def token(role: str) -> str:
    return f"{role}-{secrets.token_urlsafe(24)}"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(30)


def spawn(
    started: list[subprocess.Popen[bytes]],
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    other_group: bool = False,
) -> subprocess.Popen[bytes]:
    def as_other_group() -> None:
        os.setgroups([])
        os.setresgid(OTHER_GID, OTHER_GID, OTHER_GID)

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=as_other_group if other_group else None,
        )
    started.append(proc)
    return proc


def server_url(log: Path) -> str:
    found: list[str] = []

    def printed() -> bool:
        match = re.search(r"Conveyor server at (\S+)", log.read_text(errors="replace"))
        if match:
            found.append(match.group(1))
        return bool(match)

    wait_until(printed, 30, f"the server to start ({log})")
    return found[0]


def run_report(url: str, client_token: str, log: Path) -> dict[str, Any]:
    with Client(url, token=client_token, timeout_s=60) as client:
        task = client.submit(REPORT)
        outcome = client.result(task.id, timeout_s=60)
    assert outcome.state is TaskState.SUCCEEDED, (outcome, log.read_text(errors="replace"))
    assert isinstance(outcome.result, dict)
    return outcome.result


def assert_hidden(report: dict[str, Any], values: Sequence[str], *, ancestors: int) -> None:
    """None of `values` in the task's own environment, nor in its first `ancestors` ancestors'
    environment or command line."""
    places = {
        "os.environ": json.dumps(report["environ"]),
        "/proc/self/environ": report["proc_self"] or "",
        "env run by the task": report["env_command"],
    }
    for n, ancestor in enumerate(report["ancestors"][:ancestors]):
        places[f"ancestor {n} environ"] = ancestor["environ"] or ""
        places[f"ancestor {n} cmdline"] = ancestor["cmdline"] or ""
    for where, text in places.items():
        for value in values:
            assert value not in text, f"a secret is in the task's view of {where}"


def assert_minimal(environ: dict[str, str], *extra: str) -> None:
    names = {name for name in environ if not name.startswith("LC_")}
    assert names <= BASE | set(extra), names - BASE - set(extra)
    assert "PATH" in environ and "UNLISTED" not in environ
    assert not [name for name in environ if name.startswith("CONVEYOR_")]


def undumpable(pid: int) -> bool:
    return os.stat(f"/proc/{pid}/environ").st_gid == 0


@pytest.mark.parametrize("worker_token", [False, True], ids=["no-worker-token", "worker-token"])
def test_local_workers_and_their_tasks_get_none_of_the_servers_secrets(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], worker_token: bool
) -> None:
    admin, client, worker = token("admin"), token("client"), token("worker")
    tokens = f"admin:{admin},client:{client}" + (f",worker:{worker}" if worker_token else "")
    db, password = str(tmp_path / "secret-place.db"), secrets.token_hex(12)
    env = {**os.environ, "CONVEYOR_TOKENS": tokens, "CONVEYOR_DB": db, "PGPASSWORD": password,
           "UNLISTED": "unlisted-value"}  # fmt: skip
    log = tmp_path / "server.log"
    server = spawn(
        processes,
        ["server", "--port", str(free_port()), "--workers", "1", "--allow-module", "tests"],
        env,
        log,
        other_group=True,
    )
    report = run_report(server_url(log), client, log)

    # task -> fork server -> local worker -> server
    _fork_server, local_worker, top = report["ancestors"][:3]
    assert "worker" in (local_worker["cmdline"] or "") and top["pid"] == server.pid
    assert_hidden(report, [admin, client, worker, db, password], ancestors=2)
    assert_hidden(report, ["unlisted-value"], ancestors=1)  # the worker has it, not its tasks
    assert_minimal(report["environ"])
    # Neither the server nor its worker can be read by other processes of their user.
    assert undumpable(server.pid) and undumpable(local_worker["pid"])


def test_a_supervisors_workers_and_their_tasks_never_see_the_worker_token(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    client, worker = token("client"), token("worker")
    server_env = {**os.environ, "CONVEYOR_TOKENS": f"client:{client},worker:{worker}"}
    server_log = tmp_path / "server.log"
    port = free_port()
    spawn(processes, ["server", "--db", str(tmp_path / "s.db"), "--port", str(port)],
          server_env, server_log)  # fmt: skip
    url = server_url(server_log)
    password = secrets.token_hex(12)
    env = {**os.environ, "CONVEYOR_TOKEN": worker, "PGPASSWORD": password,
           "UNLISTED": "unlisted-value"}  # fmt: skip
    log = tmp_path / "supervisor.log"
    supervisor = spawn(
        processes,
        ["worker", "--server", url, "--processes", "1", "--allow-module", "tests"],
        env,
        log,
        other_group=True,
    )
    report = run_report(url, client, log)

    # task -> fork server -> worker copy -> supervisor
    _fork_server, copy, top = report["ancestors"][:3]
    assert top["pid"] == supervisor.pid
    assert_hidden(report, [worker], ancestors=2)  # the copy got its token through a pipe
    assert_hidden(report, [password, "unlisted-value"], ancestors=1)
    assert_minimal(report["environ"])
    assert undumpable(supervisor.pid) and undumpable(copy["pid"])


def test_a_worker_passes_its_tasks_what_it_is_told_and_nothing_else(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    client, worker = token("client"), token("worker")
    server_env = {**os.environ, "CONVEYOR_TOKENS": f"client:{client},worker:{worker}"}
    server_log = tmp_path / "server.log"
    spawn(processes, ["server", "--db", str(tmp_path / "s.db"), "--port", str(free_port())],
          server_env, server_log)  # fmt: skip
    url = server_url(server_log)
    env = {**os.environ, "CONVEYOR_TOKEN": worker, "SHARED": "shared-value",
           "UNLISTED": "unlisted-value"}  # fmt: skip
    log = tmp_path / "worker.log"
    proc = spawn(
        processes,
        ["worker", "--server", url, "--allow", "shell", "--allow-module", "tests",
         "--pass-env", "SHARED", "--env", "EXTRA=extra-value"],
        env,
        log,
        other_group=True,
    )  # fmt: skip
    report = run_report(url, client, log)

    environ = report["environ"]
    assert (environ["SHARED"], environ["EXTRA"]) == ("shared-value", "extra-value")
    assert_minimal(environ, "SHARED", "EXTRA")
    # The worker's own environment holds its token (it was started so); its fork server's,
    # which is the task's parent, does not, and the worker itself cannot be read.
    assert_hidden(report, [worker, "unlisted-value"], ancestors=1)
    assert report["ancestors"][1]["pid"] == proc.pid
    assert undumpable(proc.pid)

    # The shell handler's `env` adds to the task's environment, not to the worker's.
    with Client(url, token=client, timeout_s=60) as c:
        task = c.submit("shell", ["env"], kwargs={"env": {"ADDED": "added-value"}})
        outcome = c.result(task.id, timeout_s=60)
    assert outcome.state is TaskState.SUCCEEDED, log.read_text(errors="replace")
    assert isinstance(outcome.result, dict)
    lines = set(str(outcome.result["stdout"]).splitlines())
    assert {"ADDED=added-value", "SHARED=shared-value", "EXTRA=extra-value"} <= lines
    assert not [line for line in lines if worker in line or line.startswith("UNLISTED=")]


@pytest.mark.parametrize(
    "option",
    [["--pass-env", "CONVEYOR_TOKEN"], ["--env", "CONVEYOR_DB=x"], ["--env", "NOVALUE"]],
)
def test_a_worker_refuses_to_pass_conveyors_own_variables(option: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--burst", "--server", "http://127.0.0.1:9",
         *option],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    expected = "expected NAME=VALUE" if option[1] == "NOVALUE" else "they never reach a task"
    assert f"{option[0]} {option[1].split('=')[0]}: " in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr
