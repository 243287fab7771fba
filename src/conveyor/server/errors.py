"""Errors as answers, one table for every transport (REST and the persistent connection): the
same shapes FastAPI uses, and never a 500 for a client's mistake.

| raised                                   | status | body                                   |
| ---------------------------------------- | ------ | -------------------------------------- |
| InvalidSpecError, CycleError             | 422    | `{"detail": [{"loc", "msg", "type"}]}` |
| request validation (FastAPI's own)       | 422    | same, without echoing the input        |
| malformed or undecodable JSON body       | 422    | same (FastAPI answers 400 for some)    |
| NotFoundError                            | 404    | `{"detail": "..."}`                    |
| ConflictError, StaleTokenError           | 409    | `{"detail": "..."}`                    |
| StoreRefusedError                        | 422    | `{"detail": "..."}`: never storable    |
| StoreBusyError, StoreError               | 503    | `{"detail": "..."}` + `Retry-After`    |
| anything else                            | 500    | a generic message; the error is logged |
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ExceptionHandler

from conveyor.core.text import clean_text
from conveyor.errors import (
    ConflictError,
    InvalidSpecError,
    NotFoundError,
    StoreBusyError,
    StoreError,
    StoreRefusedError,
)

log = logging.getLogger(__name__)

BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 detail


class ErrorOut(BaseModel):
    detail: str


def validation_body(
    loc: list[str | int], msg: str, type_: str = "value_error"
) -> dict[str, object]:
    return {"detail": [{"loc": loc, "msg": msg, "type": type_}]}


async def invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, minus the echoed input: it can be large, and a non-finite number in it
    (`1e999`) cannot be written as JSON, which made the default handler fail with a 500."""
    errors = [
        {key: _json_safe(value) for key, value in error.items() if key != "input"}
        for error in cast(RequestValidationError, exc).errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _json_safe(value: object) -> object:
    """`value` as JSON can carry it: a client's own bad text (a key holding a lone surrogate,
    which no JSON encoder can write) may come back in an error's `loc`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, BaseException):  # ctx["error"] of a failed validator
        return clean_text(str(value))
    return value


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What an error becomes, on every transport: REST writes it as the response, the persistent
    connection as the answer frame."""

    status: int
    body: dict[str, object]
    retry_after_s: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


def error_answer(exc: BaseException, where: str = "") -> ErrorAnswer:
    """The answer for an error an operation raised (see the table above); `where` names the
    call in the log of an unexpected one."""
    if isinstance(exc, InvalidSpecError):  # CycleError included
        loc: list[str | int] = ["body", exc.field] if exc.field else ["body"]
        return ErrorAnswer(422, validation_body(loc, str(exc)))
    if isinstance(exc, NotFoundError):
        return ErrorAnswer(404, {"detail": str(exc)})
    if isinstance(exc, ConflictError):  # StaleTokenError, DuplicateKeyError included
        return ErrorAnswer(409, {"detail": str(exc)})
    if isinstance(exc, StoreRefusedError):  # the data itself: retrying cannot help
        log.warning("the store refused a request's data", extra={"call": where, "error": str(exc)})
        return ErrorAnswer(422, {"detail": f"the database cannot store this: {exc}"})
    if isinstance(exc, StoreError):  # StoreBusyError included
        retry_after_s = exc.retry_after_s if isinstance(exc, StoreBusyError) else 1.0
        log.warning("store unavailable", extra={"call": where, "error": str(exc)})
        return ErrorAnswer(
            503,
            {"detail": f"the database is unavailable, try again shortly ({exc})"},
            retry_after_s,
        )
    log.error("unhandled error", exc_info=exc, extra={"call": where})
    return ErrorAnswer(500, {"detail": "internal server error; see the server log"})


async def _answer_error(request: Request, exc: Exception) -> Response:
    answer = error_answer(exc, f"{request.method} {request.url.path}")
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


class MethodIndex:
    """Which methods a path accepts, for the Allow header of a 405.

    Starlette lists only the methods of the first route whose path matches (GET for
    `/tasks/{id}`, which also takes DELETE). Here, the most specific path templates that match
    decide, as in the OpenAPI schema: `/tasks/batch` is POST only, though `/tasks/{id}` matches it.
    """

    def __init__(self, routes: Sequence[APIRoute]) -> None:
        self._paths: list[tuple[re.Pattern[str], int, set[str]]] = []
        for route in routes:
            regex, _, params = compile_path(route.path)
            self._paths.append((regex, len(params), set(route.methods or ())))

    def allowed(self, path: str) -> list[str]:
        matches = [(params, methods) for regex, params, methods in self._paths if regex.match(path)]
        if not matches:
            return []
        fewest = min(params for params, _ in matches)
        return sorted(set().union(*(methods for params, methods in matches if params == fewest)))


def http_error(index: MethodIndex) -> ExceptionHandler:
    async def handle(request: Request, exc: Exception) -> Response:
        exc = cast(HTTPException, exc)
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # JSON that Python cannot decode (e.g. nested too deeply): FastAPI answers 400 here
            # and 422 for other malformed JSON; clients get one answer for one mistake.
            return JSONResponse(
                validation_body(["body"], "the body is not valid JSON", "json_invalid"),
                status_code=422,
            )
        if exc.status_code == 405 and (allowed := index.allowed(request.url.path)):
            return JSONResponse(
                {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(allowed)}
            )
        return await http_exception_handler(request, exc)

    return handle


def install(app: FastAPI, routes: Sequence[APIRoute]) -> None:
    """Map errors to answers; `routes` are the app's."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    for raised in (InvalidSpecError, NotFoundError, ConflictError, StoreError, Exception):
        app.add_exception_handler(raised, _answer_error)
    app.add_exception_handler(HTTPException, http_error(MethodIndex(routes)))


COMMON_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorOut, "description": "The request body is too large."},
    503: {
        "model": ErrorOut,
        "description": "The database is locked or unavailable; retry after `Retry-After` seconds.",
    },
}
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "No such task or worker."}
}
CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"model": ErrorOut, "description": "The operation does not fit the current state."}
}


def links(
    status: int, source: str, **targets: tuple[str, str, str]
) -> dict[int | str, dict[str, object]]:
    """OpenAPI links from an answer to the operations its id feeds: `name=(method, path, param)`,
    the value taken from `source` in the answer (`$response.body#/id`). Fuzzers follow them to
    call those operations with real ids; readers see what to do next."""
    return {
        status: {
            "links": {
                name: {
                    "operationRef": f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}",
                    "parameters": {param: source},
                }
                for name, (method, path, param) in targets.items()
            }
        }
    }
