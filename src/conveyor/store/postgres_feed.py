"""Telling other servers on the same PostgreSQL database what changed, with LISTEN/NOTIFY.

Each server's engine events wake its own long-polls at once. A task made ready or finished through
another server must wake them too, and an order given through another server (a cancel of a task a
worker runs, a drain, a stop) must reach the worker whose heartbeat this server holds: every
server publishes its changes on a channel and listens to the others'. A NOTIFY is sent after the
commit it describes, so a request that looked at the database before it is woken after it.

Publishing is off the request path: changes go into a queue that one thread drains, merging
whatever piled up into as few NOTIFYs as fit PostgreSQL's 8,000-byte payload. A lost notification
costs latency, never correctness: a long-poll that misses one still wakes at its deadline.

A server alone on its database has nobody to tell: each server's listening connection names itself
(its `application_name`: the channel's hash and the server's own id), and a server notifies only
while another one listens, as `pg_stat_activity` says, looked up at most every PEER_CHECK_S. At
200 tasks a second that spares a lone server three NOTIFYs a task, each heard back by its own
listener, about a tenth of its CPU. A server that starts may miss what the others commit before
they see it: once they must have (CATCH_UP_S after it listens), it wakes everything it holds to
look again, as it does after it loses its connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Collection
from typing import Any, Protocol

import psycopg

from conveyor.core.types import TaskId, WorkerId

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 7_500
RECONNECT_S = 1.0
PEER_CHECK_S = 1.0
"""How stale a publisher's knowledge of the other servers' listeners may be."""
CATCH_UP_S = 2 * PEER_CHECK_S
"""When a new listener wakes everything to look again: by then every publisher knows of it."""
_LISTEN_TURN_S = 0.5
"""How long the listener waits for notifications before it sees to its other duties."""


class OnRemoteChange(Protocol):
    def __call__(
        self,
        ready_queues: set[str] | None,
        finished: set[TaskId] | None,
        *,
        ordered: set[WorkerId] | None,
    ) -> None:
        """Ready queues, finished task ids and the workers given orders; None for any: some,
        not said which (after a lost connection, or too many to fit)."""


_Change = tuple[set[str], set[TaskId], set[WorkerId]]


class PostgresChangeFeed:
    def __init__(
        self, conninfo: str, channel: str, connect_kwargs: dict[str, Any] | None = None
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._kwargs = {**(connect_kwargs or {}), "autocommit": True}
        self._origin = uuid.uuid4().hex[:12]
        # application_name keeps 63 bytes: a hash stands for a long channel name.
        self._peer_prefix = f"conveyor-feed:{hashlib.sha256(channel.encode()).hexdigest()[:16]}:"
        self._peers_checked_at = -PEER_CHECK_S
        self._peers = True
        self._outbox: queue.SimpleQueue[_Change | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, on_remote_change: OnRemoteChange) -> None:
        for target, args in ((self._publish_loop, ()), (self._listen_loop, (on_remote_change,))):
            thread = threading.Thread(
                target=target, args=args, name=f"conveyor-feed-{target.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def publish(
        self,
        ready_queues: Collection[str],
        finished: Collection[TaskId],
        ordered: Collection[WorkerId] = (),
    ) -> None:
        """Queue this server's committed changes for the other servers. Never blocks."""
        if ready_queues or finished or ordered:
            self._outbox.put((set(ready_queues), set(finished), set(ordered)))

    # ---- publishing -------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stopping.is_set():
            item = self._outbox.get()
            if item is None:
                break
            ready, finished, ordered = item
            while True:  # merge whatever else is waiting into the same notifications
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stopping.set()
                    break
                ready |= more[0]
                finished |= more[1]
                ordered |= more[2]
            try:
                conn = conn if conn is not None and not conn.closed else self._connect()
                if not self._others_listen(conn):
                    continue
                for payload in self._payloads(ready, finished, ordered):
                    conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
            except psycopg.Error as exc:
                log.warning(
                    "cannot notify other servers; they will catch up at their next poll",
                    extra={"error": str(exc)},
                )
                conn = None
        if conn is not None:
            conn.close()

    def _others_listen(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether another server listens on the channel, as of at most PEER_CHECK_S ago."""
        now = time.monotonic()
        if now - self._peers_checked_at >= PEER_CHECK_S:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE starts_with(application_name, %s) AND application_name <> %s",
                (self._peer_prefix, self._listener_name),
            ).fetchone()
            self._peers = bool(row and row[0])
            self._peers_checked_at = now
        return self._peers

    @property
    def _listener_name(self) -> str:
        return self._peer_prefix + self._origin

    def _payloads(
        self, ready: set[str], finished: set[TaskId], ordered: set[WorkerId]
    ) -> list[str]:
        """As few notifications as carry every queue, worker id and task id, each filled up to
        MAX_PAYLOAD_BYTES (a queue name or an id is at most 100 ASCII characters)."""
        items = [
            *(("q", queue) for queue in sorted(ready)),
            *(("w", worker) for worker in sorted(ordered)),
            *(("f", task_id) for task_id in sorted(finished)),
        ]
        payloads: list[str] = []
        while True:
            message: dict[str, Any] = {"o": self._origin, "q": [], "f": [], "w": []}
            size = len(json.dumps(message))
            while items and size + len(items[-1][1]) + 4 <= MAX_PAYLOAD_BYTES:
                key, value = items.pop()
                message[key].append(value)
                size += len(value) + 4  # its quotes, a comma and a space
            payloads.append(json.dumps(message))
            if not items:
                return payloads

    # ---- listening --------------------------------------------------------------------------

    def _listen_loop(self, on_remote_change: OnRemoteChange) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect(application_name=self._listener_name) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    catch_up_at: float | None = time.monotonic() + CATCH_UP_S
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=_LISTEN_TURN_S, stop_after=None):
                            self._deliver(note.payload, on_remote_change)
                            if self._stopping.is_set():
                                break
                        if catch_up_at is not None and time.monotonic() >= catch_up_at:
                            # What the others committed before they knew we listen.
                            on_remote_change(None, None, ordered=None)
                            catch_up_at = None
            except psycopg.Error as exc:
                log.warning(
                    "lost the notification connection; reconnecting", extra={"error": str(exc)}
                )
                self._stopping.wait(RECONNECT_S)
                # Changes made meanwhile were not heard: wake everyone once to look again.
                on_remote_change(None, None, ordered=None)

    def _deliver(self, payload: str, on_remote_change: OnRemoteChange) -> None:
        try:
            message = json.loads(payload)
        except json.JSONDecodeError:
            log.warning("ignoring a malformed notification", extra={"payload": payload[:200]})
            return
        if message.get("o") == self._origin:
            return  # our own changes already woke our waiters
        finished, ordered = message.get("f"), message.get("w", [])
        on_remote_change(
            set(message.get("q") or ()),
            None if finished is None else set(finished),
            ordered=None if ordered is None else set(ordered),
        )

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, **self._kwargs, **kwargs)
