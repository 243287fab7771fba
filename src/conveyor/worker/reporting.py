"""The reporter thread: sends finished attempts to the server, batched, until each is answered.

Whatever has finished by the time the previous call returns goes in the next call, so under
load one call carries many reports and when idle a report leaves the moment its task ends. A
report that cannot reach the server stays queued and is sent again with backoff; the tasks
still running are not disturbed. A report is dropped only once the server has answered it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from conveyor.api.schemas import ReportIn
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.states import Outcome
from conveyor.errors import (
    ConflictError,
    ConveyorError,
    InvalidSpecError,
    NotFoundError,
    StaleTokenError,
)
from conveyor.worker.backoff import TRANSIENT_ERRORS, Backoff
from conveyor.worker.bookkeeping import Bookkeeping
from conveyor.worker.registration import Registration

log = logging.getLogger(__name__)

MAX_REPORTS_PER_CALL = 1000  # ReportBatchIn's limit


class Reporter:
    def __init__(
        self,
        conn: WorkerConnection,
        registration: Registration,
        books: Bookkeeping,
        *,
        halt: threading.Event,
    ) -> None:
        self._conn = conn
        self._registration = registration
        self._books = books
        self._halt = halt
        self._singles = 0
        """Reports to send one per call: a batch holding them was refused as malformed."""

    def run(self) -> None:
        backoff = Backoff()
        while True:
            batch = self._books.take_reports(1 if self._singles else MAX_REPORTS_PER_CALL)
            if not batch:
                return
            try:
                self._send(batch)
            except ConveyorError as exc:
                # Unreachable or busy (or refusing our token): keep the reports, try again later.
                self._books.unsent(batch)
                hint_s = exc.retry_after_s if isinstance(exc, TRANSIENT_ERRORS) else None
                delay_s = backoff.next_delay_s(hint_s)
                log.log(
                    logging.WARNING if isinstance(exc, TRANSIENT_ERRORS) else logging.ERROR,
                    "reports not delivered; retrying",
                    extra={
                        "reports": len(batch),
                        "error": str(exc),
                        "retry_in_s": round(delay_s, 1),
                    },
                )
                if self._halt.wait(delay_s):
                    return
                continue
            if backoff.failures:
                log.warning("reports delivered again", extra={"reports": len(batch)})
            backoff.reset()

    def _send(self, batch: Sequence[ReportIn]) -> None:
        """Deliver `batch` and settle it; raises when it did not reach the server."""
        worker_id = self._registration.id
        try:
            acks = self._conn.report(worker_id, batch)
        except StaleTokenError as exc:
            log.info(
                "reports refused",
                extra={"error": str(exc), "task_ids": [r.task_id for r in batch]},
            )
        except (NotFoundError, ConflictError):
            # This identity is gone, and with it every lease it held.
            self._registration.renew(worker_id)
        except InvalidSpecError as exc:
            self._refused_as_malformed(batch, exc)
            return
        else:
            for ack in acks:
                if not ack.accepted:
                    log.info(
                        "report refused",
                        extra={"task_id": ack.task_id, "detail": ack.detail},
                    )
        self._books.settled(batch)
        self._singles = max(self._singles - len(batch), 0)

    def _refused_as_malformed(self, batch: Sequence[ReportIn], exc: InvalidSpecError) -> None:
        """Find the report at fault by sending one at a time, then fail its task with the reason
        instead of retrying it forever (a result too large for the server, say)."""
        if len(batch) > 1:
            self._singles = len(batch)
            self._books.unsent(batch)
            return
        (report,) = batch
        log.error(
            "the server refused a task's report",
            extra={"task_id": report.task_id, "error": str(exc)},
        )
        self._singles = max(self._singles - 1, 0)
        if report.outcome is Outcome.FAILED and report.result is None and not report.stdout_tail:
            self._books.settled(batch)  # already the plainest report there is: give up on it
            return
        plain = ReportIn(
            task_id=report.task_id,
            token=report.token,
            outcome=Outcome.FAILED,
            error=f"the server refused this attempt's report: {exc}"[:10_000],
        )
        self._books.replace(report, plain)
