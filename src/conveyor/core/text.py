"""The text and numbers a request may carry: one set of rules, applied by the wire models.

Three things look like JSON values to Python and are not storable everywhere:

- NUL (U+0000): PostgreSQL's text and jsonb cannot hold it, SQLite can. A task one store takes
  and the other refuses would fail later, on PostgreSQL only, with a "database unavailable".
- Lone surrogates (U+D800..U+DFFF outside a pair): not text; they have no UTF-8 form. JSON can
  only carry one as an escape (`"\\ud800"`), and Python's json module reads it.
- NaN and Infinity: not JSON numbers, though Python's json module reads `NaN`, `Infinity` and
  `1e999`; stored, they would come back as null or not at all.

What a client sends (task specs, at any depth of `args`, `kwargs` and `labels`; worker
registrations; ids) is refused with 422 naming the field (`TEXT`, `check_json_values`). What a
worker reports about an attempt is not: the output and the error are the task's, and refusing
them would lose the attempt. Its text fields are cleaned instead, each bad character replaced by
U+FFFD (`CLEANED`, `clean_json`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

from conveyor.core.types import JSON

REPLACEMENT = "\ufffd"
_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "holds a NUL character (U+0000), which the database cannot store"
    if not value.isascii() and _BAD.search(value):
        return "holds a lone surrogate (U+D800 to U+DFFF), which is not text (no UTF-8 form)"
    return None


def refuse_bad_text(value: str) -> str:
    """`value` unchanged, or ValueError saying what it holds."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def clean_text(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD."""
    if "\x00" not in value and value.isascii():
        return value
    return _BAD.sub(REPLACEMENT, value)


# Before validators: pydantic's own str validation refuses a lone surrogate with a message that
# does not say why ("unable to parse raw data as a unicode string"), and leaves nothing to clean.


def _refused_if_bad(value: object) -> object:
    return refuse_bad_text(value) if isinstance(value, str) else value


def _cleaned_if_text(value: object) -> object:
    return clean_text(value) if isinstance(value, str) else value


NO_NUL_PATTERN = "^[^\\u0000]*$"
"""The part of the rule a JSON schema can state (it has no way to speak of lone surrogates)."""


class _Text:
    """Refuses bad text (`_refused_if_bad`, before pydantic's own checks), and says in the JSON
    schema that text holds no NUL, so that generated clients and fuzzers know it too."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_before_validator_function(_refused_if_bad, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        found = handler(schema)
        if found.get("type") == "string":
            found.setdefault("pattern", NO_NUL_PATTERN)  # a pattern of its own excludes NUL already
        return found


TEXT = _Text()
"""Text a client sends: refused (422 naming the field) if it holds NUL or a lone surrogate.
Put it after the constraints: `Annotated[str, Field(max_length=200), TEXT]`."""
CLEANED = BeforeValidator(_cleaned_if_text)
"""Text a worker reports: NUL and lone surrogates become U+FFFD."""


def check_json_values(value: JSON, what: str) -> None:
    """Raise ValueError naming the place (`args.2.name`) of the first string in `value`, key or
    value, that `text_problem` refuses, or of the first number that is not finite."""
    if _all_storable(value):  # the common case, without building a path for every item
        return
    stack: list[tuple[JSON, str]] = [(value, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                raise ValueError(f"{where} {problem}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(
                    f"{where} is {item!r}: JSON numbers are finite (NaN and Infinity are not JSON)"
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if (problem := text_problem(key)) is not None:
                    raise ValueError(f"{where} has a key that {problem}")
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))


def _all_storable(value: JSON) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or (not item.isascii() and _BAD.search(item)):
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key in item:
                if "\x00" in key or (not key.isascii() and _BAD.search(key)):
                    return False
            stack.extend(item.values())
    return True


def clean_json(value: JSON) -> JSON:
    """`value` with bad text cleaned (`clean_text`, keys too) and non-finite numbers as null."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value
