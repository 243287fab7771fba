"""Container tests: the image built from the Dockerfile and run with podman (a server and a
worker container, the health check, the unprivileged user), then compose.yaml's topology with
podman-compose (PostgreSQL, two servers, their workers).

`scripts/ensure-containers.sh` (run by `make test`) installs podman, runc and podman-compose and
builds stand-ins for the base images, which no registry serves these machines; `--check` says
whether this machine can run the tests, and when it cannot they skip with its reason. The image
is built once per session (about 50 s cold, seconds warm: podman's layer cache), and its size and
build time are printed at the end of the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.containers.podman import ENSURE, IMAGE, ROOT, Podman, containers_conf, run_name


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    build_s: float
    size_bytes: int
    base_size_bytes: int


BUILT = pytest.StashKey[BuiltImage]()


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    check = subprocess.run(
        ["sh", str(ENSURE), "--check"], capture_output=True, text=True, timeout=60
    )
    reason = (check.stdout + check.stderr).strip()
    if check.returncode in (2, 3):  # cannot run containers here / not prepared yet
        pytest.skip(reason)
    assert check.returncode == 0, f"ensure-containers.sh --check failed: {reason}"
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(containers_conf())
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    podman = Podman(env=env, run=run_name())
    podman.sweep()
    yield podman
    # Each fixture removes what it made, failed or not; what is left here is a fixture's bug.
    left = [
        name
        for kind in ("container", "volume", "network")
        for name in podman.names(kind, podman.run)
    ]
    podman.remove(podman.run)
    assert not left, f"the container tests left these behind: {left}"


@pytest.fixture(scope="session")
def image(podman: Podman, request: pytest.FixtureRequest) -> Iterator[str]:
    """The project's image, built from the Dockerfile as a user would, in the Docker format:
    podman's default (OCI) has no HEALTHCHECK and drops it."""
    tag = f"{IMAGE}:{podman.run}"
    started = time.monotonic()
    # RUN steps download packages: on the host's network, as the machine reaches the index.
    podman("build", "--format", "docker", "--network", "host", "--pull=never", "--tag", tag,
           str(ROOT), timeout_s=900)  # fmt: skip
    build_s = time.monotonic() - started
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    base = podman("image", "inspect", "--format", "{{.Size}}", "docker.io/library/python:3.11-slim")
    request.config.stash[BUILT] = BuiltImage(tag, build_s, size, int(base.stdout))
    try:
        yield tag
    finally:
        # Untagged, not removed: its layers are the next run's build cache.
        podman("untag", tag, check=False)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    built = config.stash.get(BUILT, None)
    if built is not None:
        terminalreporter.write_line(
            f"container image: {built.size_bytes / 1e6:.0f} MB (its base "
            f"{built.base_size_bytes / 1e6:.0f} MB), built in {built.build_s:.1f} s"
        )
