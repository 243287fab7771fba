"""Ledgers that prove the delivery guarantees after the fact, and the checker that reads them.

Workers started with `--ledger DIR` append one line when an execution starts and one when it
ends (`ExecutionLedger`); a client appends every submit the server acknowledged
(`SubmitLedger`). After a run, `check()` holds both against the server's final task records and
attempt logs and reports lost, stuck, unexpected and twice-recorded tasks, leases executed
twice, and executions that started while another attempt's lease was still valid.
`python -m conveyor.ledger check` does it from the command line.
"""

from conveyor.ledger.checker import check
from conveyor.ledger.fetch import fetch_tasks
from conveyor.ledger.records import (
    ExecutionLedger,
    ExecutionRecord,
    SubmitLedger,
    SubmitRecord,
    read_executions,
    read_submits,
    result_digest,
)
from conveyor.ledger.report import CATEGORIES, AttemptRecord, Finding, LedgerReport, TaskRecord

__all__ = [
    "CATEGORIES",
    "AttemptRecord",
    "ExecutionLedger",
    "ExecutionRecord",
    "Finding",
    "LedgerReport",
    "SubmitLedger",
    "SubmitRecord",
    "TaskRecord",
    "check",
    "fetch_tasks",
    "read_executions",
    "read_submits",
    "result_digest",
]
