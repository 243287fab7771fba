"""The worker's side of the API: register, heartbeat, lease, report, deregister.

Described as `Call`s like the client side, and sent by the same SyncSession (on the persistent
connection, where leases and reports flow without a request's set-up each), so a status code
means the same thing here as in the SDK. The worker program (`conveyor.worker`) is its user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from conveyor.api import operations as ops
from conveyor.api.params import WorkerRef
from conveyor.api.schemas import (
    AckOut,
    HeartbeatIn,
    HeartbeatOut,
    HeldLease,
    LeaseIn,
    LeaseOut,
    RegisterIn,
    RegisterOut,
    ReportBatchIn,
    ReportBatchOut,
    ReportIn,
)
from conveyor.client import calls
from conveyor.client.answers import Following
from conveyor.client.calls import Call
from conveyor.client.session import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    Connection,
    SyncSession,
    SyncTransport,
)
from conveyor.core.types import JSON, TaskId, Token
from conveyor.errors import StaleTokenError

MAX_LEASE_WAIT_S = 60.0
"""The longest long-poll the server accepts for a lease."""
MAX_LEASE_TASKS = 1000
"""The most tasks one lease call may ask for."""


def register(registration: RegisterIn) -> Call[RegisterOut]:
    return Call(ops.REGISTER_WORKER, RegisterOut.model_validate_json, body=registration)


def heartbeat(
    worker_id: str,
    running: Sequence[tuple[TaskId, Token]],
    metrics: Mapping[str, JSON] | None,
    secret: str = "",
    *,
    wait_s: float = 0.0,
) -> Call[HeartbeatOut]:
    body = HeartbeatIn(
        running=[HeldLease(task_id=task_id, token=token) for task_id, token in running],
        metrics=dict(metrics) if metrics is not None else None,
        wait_s=min(max(wait_s, 0.0), MAX_LEASE_WAIT_S),
    )
    return Call(
        ops.HEARTBEAT,
        HeartbeatOut.model_validate_json,
        WorkerRef(worker_id=worker_id),
        body,
        secret=secret,
        idempotent=True,  # a heartbeat sent twice extends the same leases twice
    )


def lease(
    worker_id: str,
    max_tasks: int,
    *,
    wait_s: float,
    queues: Sequence[str] | None,
    free: Mapping[str, float] | None,
    secret: str = "",
    follow: bool = False,
) -> Call[LeaseOut]:
    body = LeaseIn(
        max=min(max(max_tasks, 1), MAX_LEASE_TASKS),
        wait_s=min(max(wait_s, 0.0), MAX_LEASE_WAIT_S),
        queues=list(queues) if queues is not None else None,
        free=dict(free) if free is not None else None,
        follow=follow,
    )
    return Call(
        ops.LEASE, LeaseOut.model_validate_json, WorkerRef(worker_id=worker_id), body, secret=secret
    )


def report(worker_id: str, reports: Sequence[ReportIn], secret: str = "") -> Call[ReportBatchOut]:
    return Call(
        ops.REPORT,
        ReportBatchOut.model_validate_json,
        WorkerRef(worker_id=worker_id),
        ReportBatchIn(reports=list(reports)),
        # The server answers 409 only when it refused every report of the batch.
        conflict=StaleTokenError,
        secret=secret,
        idempotent=True,  # fenced: a report sent twice is recorded once, the second refused
    )


class WorkerConnection:
    """A worker's connection to its server. Thread-safe: the worker's threads share one.

    404 on heartbeat, lease or deregister means the server does not know this worker id; 409
    means it declared the worker dead: register again. A report batch refused as a whole
    raises StaleTokenError. Each registration's secret is kept and sent with that worker id's
    calls: a call for an id this connection did not register carries none.

    `through` carries the calls instead of the network (SyncSession): embedded mode's worker
    reaches its in-process server so.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        connection: Connection = "auto",
        through: SyncTransport | None = None,
    ) -> None:
        self._session = SyncSession(
            url,
            token=token,
            timeout_s=timeout_s,
            transport=transport,
            connection=connection,
            through=through,
        )
        self._secrets: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self._session.url

    def register(self, registration: RegisterIn) -> RegisterOut:
        answer = self._session.send(register(registration))
        self._secrets[answer.id] = answer.secret
        return answer

    def heartbeat(
        self,
        worker_id: str,
        running: Sequence[tuple[TaskId, Token]],
        metrics: Mapping[str, JSON] | None = None,
        *,
        wait_s: float = 0.0,
    ) -> HeartbeatOut:
        """Say the worker lives and holds `running`; the answer lists tasks to kill now. With
        `wait_s`, an answer with nothing to say comes after up to that long, or as soon as a
        task is cancelled or the worker is told to drain or stop."""
        secret = self._secrets.get(worker_id, "")
        return self._session.send(heartbeat(worker_id, running, metrics, secret, wait_s=wait_s))

    def lease(
        self,
        worker_id: str,
        max_tasks: int,
        *,
        wait_s: float = 0.0,
        queues: Sequence[str] | None = None,
        free: Mapping[str, float] | None = None,
    ) -> LeaseOut:
        """Up to `max_tasks` tasks; waits up to `wait_s` (at most 60) for the first to be ready.

        The answer also says until when, at least, the leases run (see LeaseOut)."""
        (answer,) = self.leases(
            worker_id, max_tasks, wait_s=wait_s, queues=queues, free=free, follow=False
        )
        return answer

    def leases(
        self,
        worker_id: str,
        max_tasks: int,
        *,
        wait_s: float = 0.0,
        queues: Sequence[str] | None = None,
        free: Mapping[str, float] | None = None,
        follow: bool = True,
    ) -> Following[LeaseOut]:
        """The answers of one lease call, as they come. With `follow`, on the persistent
        connection, the call goes on after an answer with tasks: each task that gets ready later
        comes in an answer of its own, until `max_tasks` have come or `wait_s` passes with none
        (the last answer is then empty), so one call brings many tasks. `stop()` ends it early.
        Over REST, or without `follow`, the one answer of lease()."""
        secret = self._secrets.get(worker_id, "")
        call = lease(
            worker_id, max_tasks, wait_s=wait_s, queues=queues, free=free, secret=secret,
            follow=follow,
        )  # fmt: skip
        return self._session.follow(call)

    def report(self, worker_id: str, reports: Sequence[ReportIn]) -> list[AckOut]:
        """Record finished attempts; one ack per report, in order."""
        secret = self._secrets.get(worker_id, "")
        return self._session.send(report(worker_id, reports, secret)).acks

    def deregister(self, worker_id: str) -> None:
        """Leave, as a worker that runs nothing more: tasks still leased to it go back to the
        queue at once, without spending a retry."""
        secret = self._secrets.get(worker_id, "")
        return self._session.send(calls.deregister(worker_id, secret, stopped=True))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> WorkerConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
