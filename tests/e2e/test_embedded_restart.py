"""Kill -9 an embedded scheduler mid-run, start it again on the same file: every job ends as it
would have, and no job that had succeeded runs again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.embedded_run import STEPS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _start(db: Path, ledger: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.embedded_run", str(db), str(ledger)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes its children too
        )


def _ended(ledger: Path) -> int:
    if not ledger.exists():
        return 0
    return sum(1 for line in ledger.read_text().splitlines() if line.startswith("end "))


def _wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, state FROM tasks"))


def test_kill_9_mid_run_then_restart_loses_nothing_and_reruns_no_success(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger.txt"
    first = _start(db, ledger, tmp_path / "first.log")
    _wait_for(lambda: _ended(ledger) >= 12, 60, "a dozen jobs to finish")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)

    before = _states(db)
    succeeded_before = {name for name, state in before.items() if state == "succeeded"}
    assert succeeded_before, "the kill came before anything was recorded: the test proves nothing"
    assert len(succeeded_before) < len(before), (
        "the kill came after the end: the test proves nothing"
    )
    starts_before = Counter(
        line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start ")
    )

    log = tmp_path / "second.log"
    second = _start(db, ledger, log)
    assert second.wait(120) == 0, log.read_text()
    summary = json.loads(log.read_text().strip().splitlines()[-1])

    after = _states(db)
    assert len(after) == len(before) == STEPS + 10 + 3, "jobs were duplicated or lost on restart"
    expected = {name: "succeeded" for name in after}
    expected["broken"] = "failed"
    expected["after-broken"] = "failed"
    assert after == expected
    assert summary["counts"] == {"succeeded": len(after) - 2, "failed": 2}

    starts = Counter(
        line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start ")
    )
    for name in succeeded_before:
        assert starts[name] == starts_before[name], (
            f"{name} had succeeded before the kill but ran again"
        )
    for name, state in expected.items():
        if state == "succeeded" and name != "flaky":
            assert starts[name] >= 1
    assert starts["after-broken"] == 0, "a job whose dependency failed must never run"
    with sqlite3.connect(db) as conn:
        (flaky_attempts,) = conn.execute(
            "SELECT attempts FROM tasks WHERE name = 'flaky'"
        ).fetchone()
    assert flaky_attempts >= 2
