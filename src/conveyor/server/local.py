"""The server in this process, with no network: embedded mode's transport.

`LocalServer(engine)` runs what a server runs (`lifecycle.serving`: waiters, group commits,
timers, ...) on an event loop in a thread of its own, and serves each call a client session
sends it (`send`, from any thread) through `dispatch`, the very function that serves the
persistent connection's calls: the same checks, validation, implementations and errors. It is a
`SyncTransport` (conveyor.client.session), so the worker program runs over it unchanged:
`Worker(config, through=LocalServer(engine))`. A call costs a JSON encoding each way and a hop
to the server's loop, instead of a socket's round trip.

close() answers the long-polls waiting (as a server that shuts down does), lets the calls in
flight end, stops the server's background work and its thread. A call after that, or one still
waiting when its server goes, gets ServerUnavailableError, as a call whose connection broke.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from conveyor.client.answers import Reply
from conveyor.client.calls import Call
from conveyor.engine import Engine
from conveyor.errors import ServerUnavailableError
from conveyor.server.context import ServerContext
from conveyor.server.dispatch import Credentials, dispatch
from conveyor.server.lifecycle import serving
from conveyor.server.operations import Caller, CallerGone, handlers
from conveyor.server.settings import ServerSettings
from conveyor.server.version import package_version

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0
"""How long close() lets the calls in flight end before it abandons them."""


class LocalServer:
    """The server's operations over `engine`, served in this process. Thread-safe.

    `token` is presented with every call, as a client's bearer token; it matters only when
    `settings.tokens` configures some. `timeout_s` bounds a call's wait for its answer, beyond
    what a long-poll may hold it, as a network client's read timeout does.
    """

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings | None = None,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.ctx = ServerContext.build(
            engine, settings or ServerSettings(), version=package_version()
        )
        self._handlers = handlers()
        presented = token.encode() if token is not None else None
        tokens = self.ctx.settings.tokens
        role = tokens.role_of(presented) if tokens and presented is not None else None
        self._credentials = Credentials(presented, role)
        self._caller = Caller(gone=self._gone)
        self._timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._closing: asyncio.Event | None = None  # set on the loop: stop serving
        self._gone_event: asyncio.Event | None = None  # set on the loop: callers are cut off
        self._in_flight: set[concurrent.futures.Future[Reply]] = set()
        self._lock = threading.Lock()  # guards _in_flight and _closed
        self._closed = False
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="conveyor-local-server", daemon=True
        )
        self._thread.start()
        try:
            started.result()
        except BaseException:
            self._thread.join()
            self._loop.close()
            raise

    # ---- the server's thread ----------------------------------------------------------------

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("the in-process server failed")
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        self._closing = asyncio.Event()
        self._gone_event = asyncio.Event()
        async with serving(self.ctx):
            started.set_result(None)
            await self._closing.wait()
            # As a server that shuts down: the long-polls answer now with what they have.
            self.ctx.waiters.close_threadsafe()
            await self._drain()
            self._gone_event.set()

    async def _drain(self) -> None:
        """Let the calls in flight end, for CLOSE_TIMEOUT_S at most."""
        with self._lock:
            pending = [asyncio.wrap_future(f) for f in self._in_flight]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)

    async def _gone(self) -> None:
        if self._gone_event is not None:
            await self._gone_event.wait()

    async def _serve_call(self, call: Call[Any]) -> Reply:
        params = call.params.model_dump(mode="json", exclude_defaults=True)
        try:
            served = await dispatch(
                self.ctx,
                self._handlers,
                call.op.name,
                params,
                call.body_bytes() or b"",
                secret=call.secret or None,
                credentials=self._credentials,
                caller=self._caller,
                where=f"in-process {call.op.name}",
            )
        except CallerGone:
            raise ServerUnavailableError(_closed_message(call)) from None
        return Reply(served.status, served.content, served.retry_after_s)

    # ---- any thread -------------------------------------------------------------------------

    def send(self, call: Call[Any]) -> Reply:
        """Serve `call` on the server's loop and return its answer; blocks meanwhile."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "LocalServer.send() was called on its own loop: it would wait forever"
            )
        with self._lock:
            if self._closed:
                raise ServerUnavailableError(_closed_message(call))
            future = self._submit(self._serve_call(call))
            self._in_flight.add(future)
        try:
            return future.result(timeout=self._timeout_s + call.hold_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServerUnavailableError(
                f"the in-process server did not answer {call.op.name} in time"
            ) from None
        except concurrent.futures.CancelledError:
            raise ServerUnavailableError(_closed_message(call)) from None
        finally:
            with self._lock:
                self._in_flight.discard(future)

    def _submit(self, coro: Coroutine[Any, Any, Reply]) -> concurrent.futures.Future[Reply]:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop has closed
            coro.close()
            failed: concurrent.futures.Future[Reply] = concurrent.futures.Future()
            failed.cancel()
            return failed

    def close(self) -> None:
        """Stop serving; idempotent. Waits for the calls in flight and the background work."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        closing = self._closing
        if closing is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(closing.set)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _closed_message(call: Call[Any]) -> str:
    return f"the in-process server closed before it answered {call.op.name}"
