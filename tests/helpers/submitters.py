"""Clients that submit the chaos workload while faults strike, and log what was acknowledged.

Both submit the way the README teaches: every task carries an idempotency key, and a call that
failed (the server down, its answer lost on a reset connection, the store busy) is simply sent
again, which returns the task already stored if the first call got through. A task goes into the
submit ledger only once a server answer acknowledged it, which is all the checker trusts.

- `BatchSubmitter`: one thread, whole chains per `Client.submit_batch` call.
- `TaskSubmitters`: several threads, one `Client.submit` call per task.

Both pace themselves over `spread_s`, so that the submissions span the faults.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.errors import ConveyorError, StoreBusyError
from conveyor.ledger import SubmitLedger

T = TypeVar("T")
RETRY_PAUSE_S = 0.2


class SharedLedger:
    """A SubmitLedger several threads append to (each append is one write of whole lines)."""

    def __init__(self, ledger: SubmitLedger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()

    def record(self, task_id: str, key: str | None) -> None:
        with self._lock:
            self._ledger.record(task_id, key)

    def record_all(self, tasks: Sequence[object]) -> None:
        with self._lock:
            self._ledger.record_all(tasks)  # type: ignore[arg-type]

    def close(self) -> None:
        self._ledger.close()


class Submitter(threading.Thread):
    """A thread that sends `calls` until each is acknowledged, paced over `spread_s`."""

    def __init__(self, name: str, url: str, spread_s: float, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.spread_s = spread_s
        self.stop = stop
        self.acknowledged = 0
        self.retries: Counter[str] = Counter()
        """Calls sent again, by the error that failed them."""
        self.error: BaseException | None = None

    def _until_acknowledged(self, send: Callable[[], T]) -> T | None:
        while not self.stop.is_set():
            try:
                return send()
            except (ConveyorError, httpx.HTTPError) as exc:
                # Down, killed mid-call, reset, or busy: the call may or may not have been stored.
                # Its keys make the next try return the stored tasks instead of new ones.
                self.retries[type(exc).__name__] += 1
                pause_s = RETRY_PAUSE_S
                if isinstance(exc, StoreBusyError) and exc.retry_after_s:
                    pause_s = min(exc.retry_after_s, 2.0)
                self.stop.wait(pause_s)
        return None

    def _pace(self, sent: int, total: int, started: float) -> bool:
        """Wait until the next call is due; False once stopped."""
        due = started + self.spread_s * sent / max(total, 1)
        return not self.stop.wait(max(0.0, due - time.monotonic()))


class BatchSubmitter(Submitter):
    def __init__(
        self,
        url: str,
        batches: list[list[TaskSpec]],
        ledger: SharedLedger,
        *,
        spread_s: float,
        stop: threading.Event,
    ) -> None:
        super().__init__("chaos-batches", url, spread_s, stop)
        self.batches = batches
        self.ledger = ledger

    def run(self) -> None:
        try:
            started = time.monotonic()
            with Client(self.url, timeout_s=10) as client:
                for sent, batch in enumerate(self.batches):
                    if not self._pace(sent, len(self.batches), started):
                        return
                    tasks = self._until_acknowledged(lambda b=batch: client.submit_batch(b))
                    if tasks is None:
                        return
                    self.ledger.record_all(tasks)
                    self.acknowledged += len(tasks)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


class TaskSubmitter(Submitter):
    def __init__(
        self,
        index: int,
        url: str,
        specs: list[TaskSpec],
        ledger: SharedLedger,
        *,
        spread_s: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(f"chaos-submit-{index}", url, spread_s, stop)
        self.specs = specs
        self.ledger = ledger

    def run(self) -> None:
        try:
            started = time.monotonic()
            with Client(self.url, timeout_s=10) as client:
                for sent, spec in enumerate(self.specs):
                    if not self._pace(sent, len(self.specs), started):
                        return
                    task = self._until_acknowledged(lambda s=spec: client.submit(s))
                    if task is None:
                        return
                    self.ledger.record(task.id, task.key)
                    self.acknowledged += 1
        except BaseException as exc:
            self.error = exc


def task_submitters(
    threads: int,
    url: str,
    specs: list[TaskSpec],
    ledger: SharedLedger,
    *,
    spread_s: float,
    stop: threading.Event,
) -> list[TaskSubmitter]:
    """`threads` submitters sharing `specs` out round-robin."""
    return [
        TaskSubmitter(i, url, specs[i::threads], ledger, spread_s=spread_s, stop=stop)
        for i in range(threads)
        if specs[i::threads]
    ]
