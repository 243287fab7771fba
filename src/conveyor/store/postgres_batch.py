"""A PostgreSQL connection on which a statement that returns nothing waits for the next one.

Every statement sent alone is a round trip, and on a busy machine a round trip costs far more
than the statement: a lease was ten of them (BEGIN, reads, two writes, COMMIT), and most of its
time was spent waiting for its turn on the CPU at either end. Here the statements whose answer
nobody reads (BEGIN, SAVEPOINT, the writes of leases and reports) are held back and sent in one
string with the next statement whose answer is needed, or with the COMMIT. A submit becomes two
round trips instead of three, a report three instead of six, and a lease, whose first reads go
together too (`read_ahead`), three instead of ten.

Statements are bound on the client (psycopg's ClientCursor quoting), as one string of several
statements can only go by the simple query protocol. Planning a statement costs PostgreSQL more
than a round trip here (a task UPDATE of thirty columns, a lease's reads), so a statement sent
more than once on a connection is prepared on it, and goes as `EXECUTE name(values)`
(`Prepared`). psycopg's own prepared statements are off on these connections (the pool's
`prepare_threshold=None`): psycopg deallocates every prepared statement of the session, ours
too, whenever it sees a ROLLBACK go by. Order is kept, so the database runs exactly the
statements it ran before, in the same transaction; only their errors arrive later, with the
statement they travel with, still inside the same `with store.transaction()` block. A savepoint
that has writes of its own sends them with its RELEASE, so that a call of a group commit still
gets its own errors.

Reads whose parameters are known in advance may go together too (`read_ahead`): they are sent in
one string, in order, and each answers the first `execute` of the same statement afterwards, as
it would have answered alone a moment later. What was read ahead and not asked for is dropped
when the transaction or savepoint ends, so that it never answers another call of a group.

A COMMIT answered `ROLLBACK` (the transaction had failed and code above caught the error) and a
connection lost before the COMMIT both raise: nothing may be answered as stored unless the COMMIT
said so.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import ClientCursor

Params = Sequence[Any] | Mapping[str, Any] | None

MAX_PREPARED = 128
"""Statements prepared per connection at most; the others are bound as they are."""
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


class Prepared:
    """The statements prepared on one connection (PREPARE lasts as long as the session).

    A statement is prepared once it has been sent twice, and never inside a transaction: before
    the next one begins, on the connection in autocommit mode, so that a PREPARE that PostgreSQL
    refuses (it cannot tell a parameter's type, say) aborts nothing; that statement is then
    bound as it is from then on."""

    def __init__(self) -> None:
        self.names: dict[str, tuple[str, tuple[str, ...] | None]] = {}
        """Prepared: statement -> (its name, its parameters' names in $n order; None: by
        position)."""
        self.wanted: set[str] = set()
        self._seen: set[str] = set()
        self._refused: set[str] = set()

    def note(self, query: str) -> None:
        """`query` was held: wanted prepared if it has been before and may be."""
        if query in self._seen:
            if query not in self._refused and len(self.names) < MAX_PREPARED:
                self.wanted.add(query)
        elif len(self._seen) < 4 * MAX_PREPARED:
            self._seen.add(query)

    def prepare_wanted(self, conn: psycopg.Connection[Any]) -> None:
        """PREPARE the wanted statements; outside a transaction only."""
        wanted, self.wanted = self.wanted, set()
        for query in wanted:
            name = f"conveyor_{len(self.names) + 1}"
            numbered, order = _numbered(query)
            try:
                conn.execute(f"PREPARE {name} AS {numbered}")
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                self._refused.add(query)
            else:
                self.names[query] = (name, order)


def _numbered(query: str) -> tuple[str, tuple[str, ...] | None]:
    """`query` with PostgreSQL's $1, $2 ... for psycopg's %s or %(name)s (the same name, the
    same number), and the names in number order (None: the parameters are positional)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            names.append("")
            return f"${len(names)}"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    numbered = _PLACEHOLDER.sub(number, query)
    return numbered, (tuple(names) if names and names[0] else None)


class ReadRows:
    """The answer of a statement read ahead, as the cursor of `execute` would give it: its
    rows, and those of the statements that followed in the same string (`nextset`)."""

    def __init__(self, results: list[list[Any]]) -> None:
        self._results = results
        self._at = 0

    @property
    def rowcount(self) -> int:
        return len(self._results[self._at])

    def fetchone(self) -> Any:
        rows = self._results[self._at]
        return rows[0] if rows else None

    def fetchall(self) -> list[Any]:
        return self._results[self._at]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._results[self._at])

    def nextset(self) -> bool | None:
        if self._at + 1 >= len(self._results):
            return None
        self._at += 1
        return True


class TransactionNotCommitted(psycopg.OperationalError):
    """The COMMIT did not commit: the transaction had failed, or its connection was lost."""


class BatchedConnection:
    """One pooled connection (in autocommit mode: BEGIN and COMMIT are ours to send), with the
    statements that return nothing held back until a statement that does, or the COMMIT."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        prepared = getattr(conn, "_conveyor_prepared", None)
        if prepared is None:
            prepared = conn._conveyor_prepared = Prepared()  # type: ignore[attr-defined]
        self._prepared: Prepared = prepared
        self._binder: ClientCursor[Any] | None = None
        """Made on the first statement with parameters: BEGIN and COMMIT need none."""
        self._held: list[str] = []
        """Statements not sent yet, each bound, in order."""
        self._savepoints = 0
        self._ahead: dict[tuple[str, str], list[list[Any]]] = {}
        """What was read ahead and not asked for yet, by statement and parameters."""
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

    def execute(self, query: str, params: Params = None) -> psycopg.Cursor[Any] | ReadRows:
        """`query` now, with the statements held before it, in one round trip; the cursor is on
        the first result of `query` itself. A statement read ahead answers from what was read."""
        if self._ahead:
            results = self._ahead.pop((query, repr(params)), None)
            if results is not None:
                return ReadRows(results)
        if not self._held:
            if self._prepared.wanted and not self.in_transaction:
                self._prepared.prepare_wanted(self.raw)
            return self.raw.execute(self._bind(query, params))
        held = self._take()
        cursor = self.raw.execute("; ".join([*held, self._bind(query, params)]))
        for _ in held:
            cursor.nextset()
        return cursor

    def read_ahead(self, reads: Sequence[tuple[str, Params, int]]) -> None:
        """Send every read of `reads` now (each a query, its parameters and how many statements
        it holds), with the statements held before them, in one round trip; each then answers
        the first `execute` of the same query and parameters (see the module's docstring)."""
        held = self._take()
        cursor = self.raw.execute(
            "; ".join([*held, *(self._bind(query, params) for query, params, _ in reads)])
        )
        for _ in held:
            cursor.nextset()
        for query, params, statements in reads:
            results = []
            for _ in range(statements):
                results.append(cursor.fetchall())
                cursor.nextset()
            self._ahead[query, repr(params)] = results

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
        known = self._prepared.names.get(query)
        if known is None:
            if "%%" not in query:
                self._prepared.note(query)
            return self._binder.mogrify(query, params)
        name, order = known
        if not params:
            return f"EXECUTE {name}"  # `name()` is a syntax error
        if order is not None:
            params = [params[key] for key in order]  # type: ignore[call-overload]
        marks = ", ".join(["%s"] * len(params))
        return self._binder.mogrify(f"EXECUTE {name}({marks})", params)

    # ---- transactions -------------------------------------------------------------------------

    def begin(self) -> None:
        if self._prepared.wanted and not self._held:
            self._prepared.prepare_wanted(self.raw)
        self._held.append("BEGIN")
        self.in_transaction = True

    def commit(self) -> None:
        """COMMIT, with whatever is held; raises TransactionNotCommitted unless it committed."""
        self.in_transaction = False
        self._ahead.clear()
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
        self._ahead.clear()
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
        self._ahead.clear()
        own_writes = bool(self._held) and self._held[-1] != f"SAVEPOINT {name}"
        self._held.append(f"RELEASE SAVEPOINT {name}")
        if own_writes:
            self.flush()

    def rollback_to(self, name: str) -> None:
        """Undo the savepoint's work: what is still held of it is dropped, what was sent is
        rolled back."""
        self._ahead.clear()
        mark = f"SAVEPOINT {name}"
        if mark in self._held:
            del self._held[self._held.index(mark) :]
            return
        self._held.clear()
        self.raw.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
