"""Poison payloads end the way they are designed to, on both stores, and the worker that ran them
keeps working: output holding NUL bytes, lone surrogates or invalid UTF-8 is cleaned and the task
succeeds; an error message holding them is cleaned and the task fails with it; megabytes of
output are capped to the tail; a result JSON cannot carry fails the task, saying why.

The fault matrix runs the same poisons among its other tasks (tests/helpers/workload.py holds
each one's designed ending); this test shows each alone, quickly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.ledger import TaskRecord
from conveyor.testing import Cluster
from tests.helpers.postgres import postgres_url
from tests.helpers.stores import db
from tests.helpers.workload import (
    DEFAULT_POISONS,
    JOBS,
    not_as_designed,
    poison_ending,
    poison_spec,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
__all__ = ["db", "postgres_url"]  # fixtures, used by name


@pytest.mark.timeout(120)
def test_each_poison_ends_as_designed_and_its_worker_carries_on(
    tmp_path: Path, db: str | None
) -> None:
    cluster = Cluster(tmp_path, db=db, cwd=ROOT)
    try:
        cluster.start_server()
        cluster.start_worker("w", concurrency=2, allow_modules=("tests",))
        with Client(cluster.url) as client:
            specs = {kind: poison_spec(kind, f"poison-{kind}") for kind in DEFAULT_POISONS}
            tasks = {kind: client.submit(spec) for kind, spec in specs.items()}
            for kind, task in tasks.items():
                client.result(task.id, timeout_s=60)
                record = TaskRecord.of(client.get(task.id))
                wrong = not_as_designed(kind, record, poison_ending(kind))
                assert wrong is None, wrong
                assert record.attempts and len(record.attempts) == 1, record.attempts
            # The same worker registration ran them all and still runs tasks.
            workers = {client.get(t.id).worker_id for t in tasks.values()}
            after = client.submit(TaskSpec(handler=f"{JOBS}:step", args=["after"]))
            assert client.result(after.id, timeout_s=30).result == {"name": "after", "depth": 1}
            assert workers == {client.get(after.id).worker_id}
    finally:
        cluster.stop()
