"""Reading the server's final records for the checker: every task, with its attempt log."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from conveyor.client import Client
from conveyor.errors import NotFoundError
from conveyor.ledger.report import TaskRecord

PAGE_SIZE = 1000  # the listing's largest page


def fetch_tasks(
    url: str,
    *,
    token: str | None = None,
    task_ids: Iterable[str] = (),
    connections: int = 8,
) -> dict[str, TaskRecord]:
    """Every task on the server (and each of `task_ids`, listed or not), with its attempts.

    A task in `task_ids` that the server does not know is left out: the checker calls it lost.
    """
    with Client(url, token=token) as client:
        listed = {t.id for t in client.iter_tasks(page_size=PAGE_SIZE)}
    wanted = sorted(listed | set(task_ids))
    # One detail call per task; a few connections in parallel keep thousands of them quick.
    chunks = [wanted[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(max_workers=connections) as pool:
        parts = pool.map(lambda ids: _details(url, token, ids), chunks)
        return {record.id: record for part in parts for record in part}


def _details(url: str, token: str | None, task_ids: list[str]) -> list[TaskRecord]:
    records: list[TaskRecord] = []
    with Client(url, token=token) as client:
        for task_id in task_ids:
            try:
                records.append(TaskRecord.of(client.get(task_id)))
            except NotFoundError:
                continue
    return records
