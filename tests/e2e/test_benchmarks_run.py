"""`python -m benchmarks --quick` still runs every workload on Conveyor (SQLite) to the end.

Not a timed test: the figures are whatever the machine gives, and no target is checked. What is
checked is that each workload recorded its figures and the tables were printed, so that a change
to an API the benchmarks use cannot leave `make bench` measuring less than it says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {"W1", "W1 tuned", "W2", "W2 tuned", "W3", "W4", "DAG", "Scale"}


def test_the_quick_benchmark_records_every_workload_on_sqlite() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--systems", "sqlite"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    figures = [line for line in lines if "workload" in line]  # the others describe the systems
    assert {f["workload"] for f in figures} == WORKLOADS
    assert all(f["system"] == "conveyor-sqlite" and f["value"] > 0 for f in figures)
    assert "\n| conveyor-sqlite | " in run.stdout  # the headline table's row
    assert "| W1 end to end, Conveyor SQLite / Huey Redis | n/a |" in run.stdout  # the targets
