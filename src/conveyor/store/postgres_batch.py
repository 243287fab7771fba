"""A PostgreSQL connection on which a statement that returns nothing waits for the next one.

Every statement sent alone is a round trip, and on a busy machine a round trip costs far more
than the statement: a lease was ten of them (BEGIN, reads, two writes, COMMIT), and most of its
time was spent waiting for its turn on the CPU at either end. Here the statements whose answer
nobody reads (BEGIN, SAVEPOINT, the writes of leases and reports) are held back and sent in one
string with the next statement whose answer is needed, or with the COMMIT. A lease becomes its
reads plus one, a submit two round trips instead of three, a report three instead of six.

A held statement is bound on the client (psycopg's ClientCursor quoting), as one string of
several statements can only go by the simple query protocol; statements sent alone keep the
extended protocol and psycopg's prepared statements. Order is kept, so the database sees exactly
the statements it saw before, in the same transaction; only their errors arrive later, with the
statement they travel with, still inside the same `with store.transaction()` block. A savepoint
that has writes of its own sends them with its RELEASE, so that a call of a group commit still
gets its own errors.

A COMMIT answered `ROLLBACK` (the transaction had failed and code above caught the error) and a
connection lost before the COMMIT both raise: nothing may be answered as stored unless the COMMIT
said so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import ClientCursor

Params = Sequence[Any] | Mapping[str, Any] | None


class TransactionNotCommitted(psycopg.OperationalError):
    """The COMMIT did not commit: the transaction had failed, or its connection was lost."""


class BatchedConnection:
    """One pooled connection (in autocommit mode: BEGIN and COMMIT are ours to send), with the
    statements that return nothing held back until a statement that does, or the COMMIT."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self._binder: ClientCursor[Any] | None = None
        """Made on the first statement held: most reads hold none and never need it."""
        self._held: list[str] = []
        """Statements not sent yet, each bound, in order."""
        self._savepoints = 0
        self.in_transaction = False

    def __getattr__(self, name: str) -> Any:
        # info, closed, cursor factories and the rest: the connection's own.
        return getattr(self.raw, name)

    @property
    def held(self) -> int:
        """Statements waiting to be sent."""
        return len(self._held)

    # ---- statements ---------------------------------------------------------------------------

    def defer(self, query: str, params: Params = None) -> None:
        """Send `query` with the next statement that is sent: its errors surface there."""
        self._held.append(self._bind(query, params))

    def execute(self, query: str, params: Params = None) -> psycopg.Cursor[Any]:
        """`query` now, with the statements held before it, in one round trip; the cursor is on
        the first result of `query` itself."""
        if not self._held:
            return self.raw.execute(query, params)
        held = self._take()
        cursor = self.raw.execute("; ".join([*held, self._bind(query, params)]))
        for _ in held:
            cursor.nextset()
        return cursor

    def cursor(self) -> psycopg.Cursor[Any]:
        """A cursor of the connection (executemany, COPY), once the held statements are sent."""
        self.flush()
        return self.raw.cursor()

    def flush(self) -> None:
        if self._held:
            self.raw.execute("; ".join(self._take()))

    def _take(self) -> list[str]:
        held, self._held = self._held, []
        return held

    def _bind(self, query: str, params: Params) -> str:
        if params is None:
            return query
        if self._binder is None:
            self._binder = ClientCursor(self.raw)
        return self._binder.mogrify(query, params)

    # ---- transactions -------------------------------------------------------------------------

    def begin(self) -> None:
        self._held.append("BEGIN")
        self.in_transaction = True

    def commit(self) -> None:
        """COMMIT, with whatever is held; raises TransactionNotCommitted unless it committed."""
        self.in_transaction = False
        if self._held == ["BEGIN"]:  # nothing was done: nothing to send
            self._held.clear()
            return
        self._held.append("COMMIT")
        held = self._take()
        cursor = self.raw.execute("; ".join(held))
        while cursor.nextset():
            pass
        if cursor.statusmessage != "COMMIT":
            raise TransactionNotCommitted(
                f"the transaction was rolled back, not committed ({cursor.statusmessage})"
            )

    def rollback(self) -> None:
        """End the transaction without storing anything of it; never raises (a connection that
        cannot take the ROLLBACK is broken, and the pool discards it)."""
        self.in_transaction = False
        held, self._held = self._held, []
        if held[:1] == ["BEGIN"]:  # never sent: nothing to undo
            return
        if not self.raw.closed:
            with contextlib.suppress(psycopg.Error):
                self.raw.execute("ROLLBACK")

    def savepoint(self) -> str:
        self._savepoints += 1
        name = f"conveyor_{self._savepoints}"
        self._held.append(f"SAVEPOINT {name}")
        return name

    def release(self, name: str) -> None:
        """The savepoint's work is kept. Writes of its own still held go now, with the RELEASE,
        so that their errors are the savepoint's; a bare RELEASE waits like any write."""
        own_writes = bool(self._held) and self._held[-1] != f"SAVEPOINT {name}"
        self._held.append(f"RELEASE SAVEPOINT {name}")
        if own_writes:
            self.flush()

    def rollback_to(self, name: str) -> None:
        """Undo the savepoint's work: what is still held of it is dropped, what was sent is
        rolled back."""
        mark = f"SAVEPOINT {name}"
        if mark in self._held:
            del self._held[self._held.index(mark) :]
            return
        self._held.clear()
        self.raw.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
