"""Podman as the container tests drive it: every command with this machine's settings, every
container, network and volume named after the test run that made it, and the sweep that removes
what a run killed before its clean-up left behind.

The settings (a containers.conf of the run's own, through CONTAINERS_CONF, so that podman-compose's
commands get them too): runc, because crun cannot set RLIMIT_NPROC on these machines, and limits
that this process can grant. Podman as root asks for 1048576 open files and, once any limit is
set, as many processes; without CAP_SYS_RESOURCE (a sandboxed VM, a container) raising a limit is
refused, and every start fails with "error setting rlimit ... operation not permitted".
scripts/ensure-containers.sh passes the same limits to its one trial container.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENSURE = ROOT / "scripts" / "ensure-containers.sh"
PREFIX = "conveyor-test"
# Podman's own default for a container's processes, which it also keeps for itself: a container
# may not have more than the runtime that starts it.
PODMAN_NPROC = 32768


def containers_conf() -> str:
    """A containers.conf for this run: runc, and limits within this process's own."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if nproc == resource.RLIM_INFINITY or nproc > PODMAN_NPROC:
        nproc = PODMAN_NPROC
    return (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )


def run_name() -> str:
    """Names this run's resources: the pid says whether the run is still alive."""
    return f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"


IMAGE = "localhost/conveyor-test"
"""The repository of the images the runs build; each run tags its own (IMAGE:run name)."""

# What `podman ... ls` lists of each kind of resource, by name.
_LISTS = {
    "container": ("ps", "--all", "--format", "{{.Names}}"),
    "volume": ("volume", "ls", "--format", "{{.Name}}"),
    "network": ("network", "ls", "--format", "{{.Name}}"),
}


@dataclass(frozen=True)
class Podman:
    """Runs podman (and podman-compose) with the run's settings; `name(...)` names a resource."""

    env: Mapping[str, str]
    run: str

    def __call__(
        self, *args: str, timeout_s: float = 120, check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self._exec(["podman", *args], timeout_s=timeout_s, check=check, env=env)

    def compose(
        self, project: str, files: Sequence[Path], *args: str, env: Mapping[str, str],
        timeout_s: float = 300,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """podman-compose in the project's directory, with `env` added to the run's."""
        argv = ["podman-compose", "-p", project]
        for file in files:
            argv += ["-f", str(file)]
        return self._exec([*argv, *args], timeout_s=timeout_s, check=True, env=env)

    def _exec(
        self, argv: list[str], *, timeout_s: float, check: bool, env: Mapping[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
            env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def name(self, what: str) -> str:
        return f"{self.run}-{what}"

    def inspect(self, name: str, template: str, *, kind: str = "container") -> str:
        """`template` filled from the container (or the image, `kind="image"`) `name`."""
        return self(kind, "inspect", "--format", template, name).stdout.strip()

    def names(self, kind: str, prefix: str) -> list[str]:
        """The containers, volumes or networks (`kind`) whose name starts with `prefix`."""
        listed = self(*_LISTS[kind], check=False).stdout.split()
        return sorted(name for name in listed if name.startswith(prefix))

    def logs(self, prefix: str, lines: int = 25) -> str:
        """The last lines of every container whose name starts with `prefix`: for failures."""
        parts = []
        for name in self.names("container", prefix):
            out = self("logs", "--tail", str(lines), name, check=False)
            parts.append(f"--- {name}\n{out.stdout}{out.stderr}")
        return "\n".join(parts)

    def remove(self, prefix: str) -> None:
        """Remove every container (its anonymous volumes too: the image's /data), then every
        volume and network, whose name starts with `prefix`."""
        if containers := self.names("container", prefix):
            self("rm", "--force", "--volumes", "--time", "2", *containers, check=False)
        for kind in ("volume", "network"):
            if found := self.names(kind, prefix):
                self(kind, "rm", "--force", *found, check=False)

    def sweep(self) -> None:
        """Remove what earlier runs left behind when they were killed before their clean-up:
        resources and image tags named after a run whose process is gone."""
        names = [n for kind in _LISTS for n in self.names(kind, PREFIX)]
        tags = self("images", "--format", "{{.Tag}}", "--filter", f"reference={IMAGE}",
                    check=False).stdout.split()  # fmt: skip
        runs = {m[0]: m["pid"] for n in [*names, *tags] if (m := _RUN.match(n))}
        for run, pid in runs.items():
            if not Path(f"/proc/{pid}").exists():
                self.remove(run)
                self("untag", f"{IMAGE}:{run}", check=False)


_RUN = re.compile(rf"{PREFIX}-(?P<pid>\d+)-[0-9a-f]+")


def poll_until(
    condition: Callable[[], object], timeout_s: float, what: str,
    diagnose: Callable[[], str] = lambda: "", every_s: float = 0.2,
) -> None:  # fmt: skip
    """Ask `condition` every `every_s` until it is truthy; after `timeout_s`, fail naming
    `what`, with what `diagnose` adds (the containers' logs)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{diagnose()}")
        time.sleep(every_s)
