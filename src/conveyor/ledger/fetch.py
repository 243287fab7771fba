"""Reading the server's final records for the checker: every task, with its attempt log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import httpx

from conveyor.client import Client
from conveyor.errors import NotFoundError, ServerUnavailableError, StoreBusyError
from conveyor.ledger.report import TaskRecord

PAGE_SIZE = 1000  # the listing's largest page
TRIES = 10
"""Reads sent at most, each, while the server answers busy or cannot be reached."""
MAX_PAUSE_S = 5.0

T = TypeVar("T")


def fetch_tasks(
    url: str,
    *,
    token: str | None = None,
    task_ids: Iterable[str] = (),
    connections: int = 8,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, TaskRecord]:
    """Every task on the server (and each of `task_ids`, listed or not), with its attempts.

    A task in `task_ids` that the server does not know is left out: the checker calls it lost.
    A read the server answers busy (503), or that cannot reach it, is sent again: the checker
    runs right after faults, when a pooled database connection may still be a dead one.
    """
    with Client(url, token=token, transport=transport) as client:
        listed = _patiently(lambda: {t.id for t in client.iter_tasks(page_size=PAGE_SIZE)})
    wanted = sorted(listed | set(task_ids))
    # One detail call per task; a few connections in parallel keep thousands of them quick.
    chunks = [wanted[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(max_workers=connections) as pool:
        parts = pool.map(lambda ids: _details(url, token, ids, transport), chunks)
        return {record.id: record for part in parts for record in part}


def _details(
    url: str, token: str | None, task_ids: list[str], transport: httpx.BaseTransport | None
) -> list[TaskRecord]:
    records: list[TaskRecord] = []
    with Client(url, token=token, transport=transport) as client:
        for task_id in task_ids:
            try:
                records.append(TaskRecord.of(_patiently(partial(client.get, task_id))))
            except NotFoundError:
                continue
    return records


def _patiently(read: Callable[[], T]) -> T:
    """`read()`, sent again after the pause the server asks for (or half a second) while it
    answers busy or cannot be reached, TRIES times at most; a read is safe to repeat."""
    for _ in range(TRIES - 1):
        try:
            return read()
        except (StoreBusyError, ServerUnavailableError) as exc:
            time.sleep(min(exc.retry_after_s or 0.5, MAX_PAUSE_S))
    return read()
