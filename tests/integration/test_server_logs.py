"""The server's log cannot be forged or turned into terminal commands by what a client sends,
and each request's lines carry its id.

A real `conveyor -v server` with tokens: a refused request's path is logged. A `%0a` in that
path must not start a line of its own, and an ESC (`%1b`, an ANSI escape) or a C1 control must
not reach the log as a raw byte.
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import conveyor
from conveyor.engine import Engine
from conveyor.server import ServerSettings
from conveyor.server.auth import Role, TokenEntry, Tokens
from tests.integration.conftest import Served, serve

WORKER = {"name": "w", "host": "test-host", "pid": 1, "concurrency": 1}
FORGED = "2026-01-01 00:00:00,000 CRITICAL conveyor.server: FORGED"


def send_raw(url: str, request: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65_536)


def wait_for_url(log: Path, timeout_s: float = 20.0) -> str:
    """The server's URL, from the line it writes once it listens (its stderr goes to `log`)."""
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        match = re.search(r"Conveyor server at (http://\S+)", log.read_text(errors="replace"))
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError(f"the server did not start: {log.read_text(errors='replace')}")


@pytest.mark.slow
def test_client_text_cannot_start_a_log_line_or_carry_escapes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(conveyor.__file__).resolve().parents[1]),  # this code
        "CONVEYOR_TOKENS": "client:a-client-token-of-some-length",
    }
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "-v", "server", "--db", str(tmp_path / "s.db"),
             "--port", "0"],
            cwd=tmp_path, stdout=sink, stderr=sink, env=env,
        )  # fmt: skip
    try:
        url = wait_for_url(output)
        forged = FORGED.replace(" ", "%20")
        for path in (
            f"/api/v1/tasks/x%0a{forged}",  # LF
            f"/api/v1/tasks/y%0d%0a{forged}",  # CRLF
            "/api/v1/tasks/z%1b[2J%1b[31mred",  # ANSI: clear the screen, then red
            "/api/v1/tasks/w%c2%9b31mC1",  # U+009B, the one-character CSI
            "/api/v1/tasks/v%e2%80%a8sep",  # U+2028, a line separator to some viewers
        ):
            answer = send_raw(url, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 401"), answer
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = output.read_bytes().decode("utf-8", errors="surrogateescape")
    assert "refused GET /api/v1/tasks/x" in log, log  # the requests were logged
    for line in log.splitlines():
        assert not line.startswith(FORGED[:20]), f"a forged line: {line!r}"
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", log), repr(log)
    assert "x\\n2026-01-01" in log and "z\\x1b[2J" in log, log


def test_the_formatter_keeps_a_traceback_readable_but_unforgeable() -> None:
    import logging

    from conveyor.cli.logs import OneLineFormatter, escape_controls

    formatter = OneLineFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("bad\nFORGED line\x1b[31m")
    except ValueError:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed on %s", ("a\rb",), sys.exc_info()
        )
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR failed on a\\rb"
    assert len(lines) > 2, "the traceback keeps its lines"
    assert all(line.startswith(" ") for line in lines[1:]), lines
    assert "\x1b" not in "".join(lines)
    assert escape_controls("a\tb\u0085c\u2029") == "a\\tb\\x85c\\u2029"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the `conveyor` loggers write at INFO, in the CLI's text format."""
    from conveyor.cli.logs import OneLineFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("conveyor")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.anyio
async def test_each_request_has_an_id_in_its_header_and_its_log_lines(
    served: Served, log_lines: io.StringIO
) -> None:
    first = await served.post("/workers", json=WORKER)
    second = await served.post("/workers", json=WORKER)
    assert first.status_code == second.status_code == 201
    ids = [r.headers["x-request-id"] for r in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1], ids
    # The engine logs in a worker thread: the id follows the call there.
    lines = [line for line in log_lines.getvalue().splitlines() if "worker registered" in line]
    assert [line.rpartition("request_id=")[2] for line in lines] == ids, lines
    for answer, line in zip((first, second), lines, strict=True):
        assert f"worker_id={answer.json()['id']}" in line


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("trace-7f3a.b:c_d", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ('q"uote', False),
        ("-starts-with-a-dash", False),
        ("line\\nbreak", False),
    ],
)
async def test_a_sane_incoming_request_id_is_kept_any_other_replaced(
    served: Served, log_lines: io.StringIO, sent: str, kept: bool
) -> None:
    answer = await served.post("/workers", json=WORKER, headers={"X-Request-ID": sent})
    assert answer.status_code == 201
    request_id = answer.headers["x-request-id"]
    assert (request_id == sent) is kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert f"request_id={request_id}" in log_lines.getvalue()


@pytest.mark.anyio
async def test_a_refused_request_has_an_id_too(
    make_engine: Callable[..., Engine], log_lines: io.StringIO
) -> None:
    tokens = Tokens([TokenEntry(Role.CLIENT, "a-client-token-of-some-length")])
    async with serve(make_engine(), ServerSettings(timer_interval_s=0.05, tokens=tokens)) as s:
        answer = await s.get("/tasks")
    assert answer.status_code == 401
    line = next(x for x in log_lines.getvalue().splitlines() if "refused GET" in x)
    assert line.endswith(f"request_id={answer.headers['x-request-id']}"), line
