"""What one server tells the others on LISTEN/NOTIFY: every ready queue, finished task and worker
given an order arrives, in notifications that each fit PostgreSQL's payload limit, however many
there are; an older server's notification, without workers, is still understood."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.core.types import TaskId, WorkerId
from conveyor.store.postgres_feed import MAX_PAYLOAD_BYTES, PostgresChangeFeed


class Heard:
    def __init__(self) -> None:
        self.queues: set[str] = set()
        self.finished: set[TaskId] | None = set()
        self.ordered: set[WorkerId] | None = set()

    def __call__(
        self, ready_queues: set[str], finished: set[TaskId] | None, *, ordered: Any
    ) -> None:
        self.queues |= ready_queues
        self.finished = (
            None if finished is None or self.finished is None else self.finished | finished
        )
        self.ordered = None if ordered is None or self.ordered is None else self.ordered | ordered


def _sent_and_heard(
    ready: set[str], finished: set[str], ordered: set[str]
) -> tuple[list[str], Heard]:
    speaker = PostgresChangeFeed("postgresql://unused", "channel")
    listener = PostgresChangeFeed("postgresql://unused", "channel")
    payloads = speaker._payloads(ready, finished, ordered)  # type: ignore[arg-type]
    heard = Heard()
    for payload in payloads:
        listener._deliver(payload, heard)
    return payloads, heard


@pytest.mark.parametrize(("tasks", "workers"), [(0, 0), (3, 2), (900, 0), (0, 600), (700, 500)])
def test_every_id_arrives_in_payloads_that_fit(tasks: int, workers: int) -> None:
    finished = {f"task-{i:032d}" for i in range(tasks)}
    ordered = {f"worker-{i:030d}" for i in range(workers)}
    payloads, heard = _sent_and_heard({"default", "gpu"}, finished, ordered)
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    assert (heard.queues, heard.finished, heard.ordered) == ({"default", "gpu"}, finished, ordered)


def test_many_long_queue_names_are_spread_over_payloads_too() -> None:
    queues = {f"queue-{i:094d}" for i in range(300)}  # 100 characters each
    payloads, heard = _sent_and_heard(queues, {"t1"}, {"w1"})
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    assert (heard.queues, heard.finished, heard.ordered) == (queues, {"t1"}, {"w1"})


def test_a_notification_without_workers_or_task_ids_is_understood() -> None:
    heard = Heard()
    PostgresChangeFeed("postgresql://unused", "c")._deliver(
        json.dumps({"o": "another", "q": ["default"], "f": None}), heard
    )
    assert (heard.queues, heard.finished, heard.ordered) == ({"default"}, None, set())


def test_a_server_does_not_hear_itself() -> None:
    feed = PostgresChangeFeed("postgresql://unused", "channel")
    heard = Heard()
    for payload in feed._payloads({"q"}, {"t"}, {"w"}):  # type: ignore[arg-type]
        feed._deliver(payload, heard)
    assert (heard.queues, heard.finished, heard.ordered) == (set(), set(), set())
