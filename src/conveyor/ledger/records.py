"""The two ledgers on disk: what workers executed, and what clients had acknowledged.

Both are JSON Lines, appended and flushed one line at a time, so that a process killed with
SIGKILL leaves every line it wrote before the kill (the page cache keeps them; an fsync per line
would only matter if the machine itself went down). A line cut short by a kill mid-write is
skipped when the ledger is read.

An execution writes two lines: `start` before its handler is handed to a child process, `end`
once the executor returns its outcome. A start without an end is an execution cut off by a kill.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Literal, Protocol, Self

from conveyor.core.types import JSON

EXECUTION_SUFFIX = ".jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One line of a worker's execution ledger."""

    event: Literal["start", "end"]
    task_id: str
    token: int
    worker_id: str
    worker_name: str
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    """How the executor saw it end (an Outcome value); None on a start line."""
    reported: bool | None = None
    """On an end line: whether the worker sent a report (False: the server had voided the lease)."""
    result_digest: str | None = None
    """sha256 of the canonical JSON of the result, for a succeeded execution."""


@dataclass(frozen=True, slots=True)
class SubmitRecord:
    """One task a server acknowledged to a client."""

    task_id: str
    key: str | None = None


def result_digest(result: JSON) -> str:
    """The same digest for equal JSON values, whatever their key order."""
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _JsonLines:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def _append(self, record: dict[str, JSON]) -> None:
        # One write of a whole line, then a flush: a kill can only lose the line being written.
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ExecutionLedger(_JsonLines):
    """A worker's ledger: `DIR/<worker-name>-<pid>.jsonl`. Used from one thread."""

    def __init__(self, directory: str | Path, worker_name: str, pid: int) -> None:
        name = _UNSAFE.sub("_", worker_name) or "worker"
        super().__init__(Path(directory) / f"{name}-{pid}{EXECUTION_SUFFIX}")
        self.worker_name = worker_name
        self.pid = pid

    def started(self, task_id: str, token: int, worker_id: str, started_at: datetime) -> None:
        self._append({
            "event": "start", "task_id": task_id, "token": token, "worker_id": worker_id,
            "worker_name": self.worker_name, "pid": self.pid, "started_at": started_at.isoformat(),
        })  # fmt: skip

    def ended(
        self,
        task_id: str,
        token: int,
        worker_id: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        outcome: str,
        reported: bool,
        result: JSON = None,
    ) -> None:
        self._append({
            "event": "end", "task_id": task_id, "token": token, "worker_id": worker_id,
            "worker_name": self.worker_name, "pid": self.pid, "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(), "outcome": outcome, "reported": reported,
            "result_digest": result_digest(result) if outcome == "succeeded" else None,
        })  # fmt: skip


class _Submitted(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def key(self) -> str | None: ...


class SubmitLedger(_JsonLines):
    """A client's ledger of acknowledged submits: record a task only once the server returned it."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(Path(path))

    def record(self, task_id: str, key: str | None = None) -> None:
        self._append({"task_id": task_id, "key": key})

    def record_all(self, tasks: Iterable[_Submitted]) -> None:
        """Record every task a submit or batch call returned (TaskOut has `id` and `key`)."""
        lines = "".join(
            json.dumps({"task_id": t.id, "key": t.key}, separators=(",", ":")) + "\n" for t in tasks
        )
        self._file.write(lines)
        self._file.flush()


def read_executions(directory: str | Path) -> list[ExecutionRecord]:
    """Every line of every worker ledger in `directory`, file by file in the order written."""
    records: list[ExecutionRecord] = []
    for path in sorted(Path(directory).glob(f"*{EXECUTION_SUFFIX}")):
        for raw in _lines(path):
            finished = raw.get("finished_at")
            records.append(
                ExecutionRecord(
                    event="end" if raw["event"] == "end" else "start",
                    task_id=str(raw["task_id"]),
                    token=_int(raw["token"]),
                    worker_id=str(raw["worker_id"]),
                    worker_name=str(raw["worker_name"]),
                    pid=_int(raw["pid"]),
                    started_at=datetime.fromisoformat(str(raw["started_at"])),
                    finished_at=datetime.fromisoformat(str(finished)) if finished else None,
                    outcome=_optional_str(raw.get("outcome")),
                    reported=bool(raw["reported"]) if raw.get("reported") is not None else None,
                    result_digest=_optional_str(raw.get("result_digest")),
                )
            )
    return records


def read_submits(path: str | Path) -> list[SubmitRecord]:
    return [
        SubmitRecord(str(raw["task_id"]), _optional_str(raw.get("key")))
        for raw in _lines(Path(path))
    ]


def _lines(path: Path) -> Iterator[dict[str, JSON]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # cut short by a kill mid-write
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            if isinstance(raw, dict):
                yield raw


def _int(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer in the ledger, got {value!r}")
    return value


def _optional_str(value: JSON) -> str | None:
    return None if value is None else str(value)
