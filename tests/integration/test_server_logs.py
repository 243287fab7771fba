"""The server's log cannot be forged or turned into terminal commands by what a client sends.

A real `conveyor -v server` with tokens: a refused request's path is logged. A `%0a` in that
path must not start a line of its own, and an ESC (`%1b`, an ANSI escape) or a C1 control must
not reach the log as a raw byte.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import conveyor

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
