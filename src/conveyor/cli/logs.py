"""Log output: one record per line, with its structured fields, whatever text a client managed to
put in it.

Two formats (`--log-format`):

- `text`, for people: `2026-12-07 10:00:00,000 WARNING conveyor.worker: leasing failed
  error="connection refused" retry_in_s=2.0`. The fields a call attached (`extra={...}`) and
  those bound to the context (the HTTP request's `request_id`, conveyor.logcontext) follow the
  message as `key=value`, a value quoted when it holds a space, a quote, `=` or nothing, so
  that no value can pass for another field.
- `json`, for log collectors: one JSON object per line with `time` (ISO 8601, UTC), `level`,
  `logger`, `message`, the fields, and `exception` when there is one.

Request paths, worker names, error messages and task data can hold text a client chose. Written
raw, a `%0a` in a path (decoded to a line feed) starts a line that passes for a record of its
own, and an ESC sequence recolours or clears the terminal that shows the log. So every control
character of a record's line (C0, DEL, C1, and the Unicode line and paragraph separators) is
written as an escape (`\\n`, `\\x1b`); a traceback keeps its lines in the text format, each
indented, so that none of them can pass for a record either.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conveyor.logcontext import context_fields

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


_ESCAPES: dict[int, str] = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}
_ESCAPES |= {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# What JSON leaves raw but a terminal or a line-based reader would act on.
_JSON_ESCAPES: dict[int, str] = {
    code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
}
_BARE_VALUE = re.compile(r'[^\s"=\\]+')
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")

# The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape."""
    return text.translate(_ESCAPES)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a record carries beyond the standard attributes: its `extra` fields, then the
    context's (conveyor.logcontext). Fields set to None are left out."""
    fields = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_") and value is not None
    }
    for key, value in context_fields().items():
        fields.setdefault(key, value)
    return fields


def format_value(value: object) -> str:
    """One field's value as logfmt writes it: bare when it is one plain word, else in quotes
    with `\\` and `"` escaped; a list as its items joined by commas."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, list | tuple | set | frozenset):
        items = [_scalar(item) for item in value]
        text = ",".join(items) if all(_BARE_VALUE.fullmatch(i) for i in items) else _json(value)
    elif isinstance(value, Mapping):
        text = _json(value)
    else:
        text = str(value)
    if _BARE_VALUE.fullmatch(text):
        return escape_controls(text)
    return '"' + escape_controls(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def format_fields(fields: Mapping[str, Any]) -> str:
    return " ".join(
        f"{_KEY_CHARS.sub('_', key) or '_'}={format_value(value)}" for key, value in fields.items()
    )


class OneLineFormatter(logging.Formatter):
    """The text format: a record's line cannot hold a line break or a terminal escape of its
    own, and its fields follow its message as `key=value`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = escape_controls(super().formatMessage(record))
        fields = record_fields(record)
        return f"{line} {format_fields(fields)}" if fields else line

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """The JSON format: one object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry[key if key not in entry else f"field_{key}"] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))
        return text.translate(_JSON_ESCAPES)


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity are not JSON
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return value


def _indented(text: str) -> str:
    return "\n".join("  " + escape_controls(line) for line in text.splitlines())


def formatter(log_format: LogFormat | str) -> logging.Formatter:
    if LogFormat(log_format) is LogFormat.JSON:
        return JsonFormatter()
    return OneLineFormatter(FORMAT)


def configure_logging(level: int, log_format: LogFormat | str = LogFormat.TEXT) -> None:
    """Log to stderr at `level`, in `log_format`; uvicorn's loggers included (the server runs
    it with no logging config of its own, so its records come here)."""
    handler = _Handler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])


def use_log_format(log_format: LogFormat | str) -> None:
    """Switch the handler configure_logging() set up to `log_format` (a command's
    `--log-format`; the group configures logging before the command's options are known)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler):
            handler.setFormatter(formatter(log_format))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, to tell it apart from handlers someone else added (pytest's, an embedding app's)."""
