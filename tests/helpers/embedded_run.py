"""A script that runs a fixed set of jobs embedded: `python -m tests.helpers.embedded_run DB LEDGER`.

Started, killed and started again by the restart test; adding the same named jobs again on restart
must continue the run, not duplicate it.
"""

from __future__ import annotations

import json
import sys

from conveyor.embedded import Job, Scheduler
from conveyor.engine import EngineSettings

STEPS = 40


def jobs(ledger: str) -> list[Job]:
    step = "tests.helpers.ledger_jobs:step"
    result = [Job(step, name=f"s{i}", args=[ledger, f"s{i}", 0.05]) for i in range(STEPS)]
    # a chain across the run, so that some jobs wait on others when the kill comes
    result += [
        Job(step, name=f"c{i}", args=[ledger, f"c{i}", 0.05], depends_on=[f"c{i - 1}"] if i else [])
        for i in range(10)
    ]
    result.append(
        Job(
            "tests.helpers.ledger_jobs:flaky",
            name="flaky",
            args=[ledger, "flaky"],
            max_retries=2,
            retry={"backoff_s": 0.05},
        )
    )
    result.append(Job("fail", name="broken", args=["broken on purpose"]))
    result.append(
        Job(step, name="after-broken", args=[ledger, "after-broken"], depends_on=["broken"])
    )
    return result


def main() -> None:
    db, ledger = sys.argv[1], sys.argv[2]
    settings = EngineSettings(lease_s=5, heartbeat_interval_s=0.5, worker_dead_after_s=2)
    with Scheduler(db, concurrency=4, settings=settings) as scheduler:
        scheduler.add_all(jobs(ledger))
        summary = scheduler.run_until_complete(timeout_s=120)
        print(
            json.dumps(
                {"ok": summary.ok, "counts": {s.value: n for s, n in summary.counts.items()}}
            )
        )


if __name__ == "__main__":
    main()
