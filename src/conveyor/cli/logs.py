"""Log output: one record per line, whatever text a client managed to put in it.

Request paths, worker names and error messages can hold text a client chose. Written raw, a
`%0a` in a path (decoded to a line feed) starts a line that passes for a record of its own, and
an ESC sequence recolours or clears the terminal that shows the log. So every control character
of a record's line (C0, DEL, C1, and the Unicode line and paragraph separators) is written as an
escape (`\\n`, `\\x1b`); a traceback keeps its lines, each indented, so that none of them can
pass for a record either.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES: dict[int, str] = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}
_ESCAPES |= {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape."""
    return text.translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """A Formatter whose records cannot hold a line break or a terminal escape of their own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + escape_controls(line) for line in text.splitlines())


def configure_logging(level: int) -> None:
    """Log to stderr at `level`, through OneLineFormatter; uvicorn's loggers included (the
    server runs it with no logging config of its own, so its records come here)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
