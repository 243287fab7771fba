"""A test run stopped with SIGTERM (`timeout`, a cancelled CI job) stops the servers and workers
its clusters started: each runs in a session of its own, so nothing else would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.testing import pid_gone, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

HOLDING_TEST = """
import time
from pathlib import Path

from conveyor.testing import Cluster


def test_holds_a_cluster(tmp_path):
    cluster = Cluster(tmp_path)
    cluster.start_server()
    written = Path({pid_file!r} + ".part")
    written.write_text(str(cluster.servers[0][2].pid))
    written.replace({pid_file!r})
    time.sleep(120)
"""


def test_a_suite_stopped_with_sigterm_stops_its_clusters(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    holding = tmp_path / "holding" / "test_holding.py"
    holding.parent.mkdir()
    holding.write_text(HOLDING_TEST.format(pid_file=str(pid_file)))
    # The suite's own conftest, as a plugin: the test file lies outside tests/.
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         str(holding)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server_pid = None
    try:
        wait_until(pid_file.exists, 30, "the held cluster's server to start")
        server_pid = int(pid_file.read_text())
        suite.send_signal(signal.SIGTERM)
        output, _ = suite.communicate(timeout=30)
        wait_until(lambda: pid_gone(server_pid), 15, f"the server to stop\n{output.decode()}")
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
        if server_pid is not None and not pid_gone(server_pid):
            os.killpg(server_pid, signal.SIGKILL)  # left running: this test failed
