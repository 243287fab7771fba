"""Validating user input into models, with Conveyor's own error: one field named, one line."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from conveyor.errors import InvalidSpecError

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, *, task: str | None = None) -> M:
    """`model` built from `data`, or InvalidSpecError naming the first bad field (and task)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_spec(exc, task=task) from None


def invalid_spec(exc: ValidationError, *, task: str | None = None) -> InvalidSpecError:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    return InvalidSpecError(error["msg"], field=field, task=task)
