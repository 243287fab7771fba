"""The child side of the executor: a loop that answers each request with one handler call.

The pool preloads this module into the forkserver, so a new child starts with it imported.
A child runs one call at a time and lives until the pool closes its pipe or kills it.

Around each call the child captures the attempt's output at the file descriptors (capture) and,
afterwards, kills whatever processes the attempt left running (containment); it runs with the
environment the pool gives it, not the one it inherited.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

from conveyor.core.limits import MAX_RESULT_BYTES, check_json
from conveyor.core.types import JSON
from conveyor.errors import HandlerError
from conveyor.executor import containment, wire
from conveyor.executor.capture import Redirect
from conveyor.handlers.registry import HandlerPolicy, resolve_handler

# An error line goes into logs, the dashboard and the store: keep one huge message from flooding them.
_ERROR_CHARS = 1000


def serve(
    conn: Connection,
    policy: HandlerPolicy,
    memory_limit_mb: int | None,
    environment: Mapping[str, str] | None,
    stdout: Connection,
    stderr: Connection,
) -> None:
    """The child's main function: run requests from `conn` until the parent closes it.

    `environment`, if given, replaces the inherited one: it is all that handlers and the
    processes they start see. `stdout` and `stderr` are the write ends of the pool's capture
    pipes.
    """
    # Ctrl-C goes to the whole foreground process group; the parent decides what happens to
    # running tasks, so the child must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The fork server ignores SIGTERM (forkserver_signals); a handler and what it runs must not.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Lead a process group of our own, so a timeout or a cancel also kills what a handler started,
    # and adopt the orphans of our descendants, so that what left the group can be found too.
    os.setpgrp()
    containment.become_subreaper()
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    redirect = Redirect(stdout.fileno(), stderr.fileno())
    # Before the memory limit: a thread's stack counts towards RLIMIT_AS.
    _exit_when_parent_dies()
    if memory_limit_mb is not None:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send_bytes(wire.READY)
    handlers: dict[str, Callable[..., JSON]] = {}
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return  # the pool closed: nothing left to do
        redirect.begin()
        try:
            reply = run_request(data, policy, handlers)
            # Before the reply: the attempt is over only once nothing it started runs on.
            containment.kill_descendants()
        finally:
            redirect.end()
        conn.send_bytes(reply)


def run_request(
    data: bytes,
    policy: HandlerPolicy,
    handlers: dict[str, Callable[..., JSON]],
) -> bytes:
    """Run one encoded Request and return the encoded Reply. Never raises for a handler's fault.

    `handlers` caches resolved handlers by name, so a user module is imported once per child.
    """
    request = wire.decode_request(data)
    try:
        name = request["handler"]
        handler = handlers.get(name)
        if handler is None:
            handler = handlers[name] = resolve_handler(name, policy)
        result = handler(*request["args"], **request["kwargs"])
    # SystemExit and KeyboardInterrupt too: a handler calling sys.exit() failed, and the child
    # must stay alive to say so.
    except BaseException as exc:
        return wire.encode(_failure(exc))
    reply: wire.Reply = {"outcome": "succeeded", "result": result, "error": None, "traceback": None}
    try:
        encoded = wire.encode(reply)
    except (TypeError, ValueError, RecursionError) as exc:
        error = _clip(f"result is not JSON serializable: {_message(exc)}")
        return wire.encode({**reply, "outcome": "failed", "result": None, "error": error})
    unstorable = _unstorable(result)
    if unstorable is not None:
        # Failed here, in the task's own attempt: a result that went on to the worker would be
        # refused by its report (and, before, stopped the worker that ran it).
        error = _clip(f"result cannot be stored: {unstorable}")
        return wire.encode({**reply, "outcome": "failed", "result": None, "error": error})
    return encoded


def _unstorable(result: JSON) -> str | None:
    """Why no store can keep `result`, if it cannot: too large or too deep (the limits every
    report is held to), or text with no UTF-8 form (a lone surrogate, from a file name read
    with surrogateescape, say)."""
    try:
        check_json(result, max_bytes=MAX_RESULT_BYTES, what="result")
    except UnicodeEncodeError:
        return "it holds text with no UTF-8 form (a lone surrogate)"
    except ValueError as exc:
        return str(exc)
    return None


def _failure(exc: BaseException) -> wire.Reply:
    if isinstance(exc, HandlerError):
        # The message says it all; a traceback helps only when loading the user's module broke.
        cause = exc.__cause__
        trace = "".join(traceback.format_exception(cause)) if cause is not None else None
        error = str(exc)
    else:
        # Drop the first frame: it is run_request's, not the user's.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        trace = "".join(traceback.TracebackException(type(exc), exc, tb).format())
        error = describe_exception(exc)
    return {"outcome": "failed", "result": None, "error": _clip(error), "traceback": trace}


def describe_exception(exc: BaseException) -> str:
    """One line naming the exception and the first line of its message: 'ValueError: boom'."""
    message = _message(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        return "<the exception's message could not be printed>"
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _exit_when_parent_dies() -> None:
    """Die at once if the parent dies, so a long handler does not outlive its worker."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        # Take down whatever the handler started (in our group or not), then our whole group.
        containment.kill_descendants()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="conveyor-parent-watch", daemon=True).start()
