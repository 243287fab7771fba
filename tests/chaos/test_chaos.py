"""Chaos under load, on SQLite and on PostgreSQL: 2,000 tasks in chains, with retries, failures and
timeouts, four workers with execution ledgers; a random worker SIGKILLed (process group) every two
seconds and restarted, the server SIGKILLed twice and restarted on the same port and database.

The ledger checker must find nothing lost, nothing unexpected, nothing recorded twice and no
execution started inside another attempt's lease; every task must end as its plan says, and no
kill may spend a task's retries. See tests/helpers/chaos.py for the workload and the chaos.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conveyor.ledger import CATEGORIES
from tests.helpers.chaos import ChaosConfig, ChaosResult, run_chaos
from tests.helpers.postgres import postgres_url

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
__all__ = ["postgres_url"]  # the fixture, used by name

CI = ChaosConfig(tasks=2000, workers=4, concurrency=2, lease_s=2.0, kill_every_s=2.0,
                 server_kills=2)  # fmt: skip


def prove(result: ChaosResult) -> None:
    figures = result.figures()
    print("chaos figures:", json.dumps(figures))  # shown with -rA or -s; quoted in the README
    report = result.report
    for category in CATEGORIES:
        found = report.findings(category)
        assert not found, f"{len(found)} {category}: {found[:5]}\n{report.summary()}"
    assert not result.not_as_designed, result.not_as_designed[:10]

    # Everything acknowledged finished, and the chaos really happened.
    assert report.figures["submitted"] == report.figures["tasks"] == CI.tasks
    assert result.server_kills == CI.server_kills
    assert result.worker_kills >= 8, "a worker every two seconds, for the whole run"
    assert report.figures["executions_cut_off"] > 0, "some kills must land mid-execution"
    assert report.figures["attempts_lost"] > 0, "some tasks must be run again after a kill"
    # Every designed ending occurred.
    assert set(report.final_states) == {"succeeded", "failed", "timed_out"}
    assert report.figures["attempts_failed"] > 0 and report.figures["attempts_timed_out"] > 0


@pytest.mark.timeout(300)
def test_chaos_on_sqlite(tmp_path: Path) -> None:
    prove(run_chaos(tmp_path, CI, cwd=ROOT, say=print))


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_chaos_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    prove(run_chaos(tmp_path, replace(CI, db=postgres_url), cwd=ROOT, say=print))
