"""`promtool check metrics` (Prometheus' own linter) passes on /metrics after a workload, made-up
queue and handler names included. `make test` installs promtool first when it can
(scripts/ensure-promtool.sh); without it this test skips, saying why."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.conftest import Served
from tests.integration.test_metrics import run_workload

pytestmark = pytest.mark.anyio
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: `sh scripts/ensure-promtool.sh` installs it (Debian's "
    "prometheus package), as `make test` does",
)
async def test_promtool_finds_no_problem_in_the_metrics(served: Served) -> None:
    assert PROMTOOL is not None
    await run_workload(served)
    batch = [{"handler": f"made.up{i}:run", "queue": f"q{i}"} for i in range(50)]
    assert (await served.post("/tasks/batch", json={"tasks": batch})).is_success
    text = (await served.http.get("/metrics")).text
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "promtool reports no lint problem either"
