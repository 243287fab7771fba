"""Worker reports between their wire models and the engine's, for the fast lane and the route.

Kept out of `conveyor.api.schemas`: the SDK and the CLI import those, and should not pay for
importing the engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.api.schemas import AckOut, ReportBatchIn, ReportBatchOut
from conveyor.engine import Report, ReportAck


def engine_reports(body: ReportBatchIn) -> list[Report]:
    return [
        Report(
            task_id=r.task_id, token=r.token, outcome=r.outcome, result=r.result, error=r.error,
            traceback=r.traceback, stdout_tail=r.stdout_tail, stderr_tail=r.stderr_tail,
        )
        for r in body.reports
    ]  # fmt: skip


def acks_out(acks: Sequence[ReportAck]) -> ReportBatchOut:
    return ReportBatchOut(
        acks=[
            AckOut(task_id=a.task_id, accepted=a.accepted, state=a.state, detail=a.detail)
            for a in acks
        ]
    )
