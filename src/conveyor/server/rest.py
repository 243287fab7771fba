"""REST: every declared operation (conveyor.api.operations) as a FastAPI route.

The route of an operation is built from its declaration alone: the path and the method; one
parameter per field of its `params` model, in the path when the path names it and in the query
otherwise, with the field's constraints (so FastAPI validates them and documents them in
/openapi.json); its `body` model; its answer model, status and error statuses. The endpoint
hands the validated parameters and body to the operation's one implementation
(conveyor.server.operations), as the persistent connection does, and writes its answer.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from conveyor.api.operations import Operation, operations
from conveyor.server.context import ServerContext
from conveyor.server.errors import COMMON_RESPONSES, ErrorOut
from conveyor.server.operations import Answer, Caller, CallerGone, Handler

_JSON = "application/json"


def include_operations(app: FastAPI, ctx: ServerContext, handlers: Mapping[str, Handler]) -> None:
    """Add a route for every operation, each served by its implementation in `handlers`."""
    for op in operations():
        app.add_api_route(
            op.url_path,
            _endpoint(op, handlers[op.name], ctx),
            methods=[op.method],
            name=op.name,
            operation_id=op.name,
            summary=op.summary.split(". ")[0].rstrip("."),
            description=op.summary,
            tags=[op.tag] if op.tag else None,
            status_code=op.status,
            response_model=op.answer,
            # For the documentation: the endpoint writes its answer itself (`respond`).
            response_class=Response if op.answer is None else JSONResponse,
            responses=_responses(op),
        )


def _endpoint(op: Operation, handler: Handler, ctx: ServerContext) -> Any:
    names = list(op.params.model_fields)

    async def endpoint(request: Request, **given: Any) -> Response:
        params = op.params.model_construct(**{name: given[name] for name in names})
        caller = Caller(gone=lambda: _disconnected(request))
        try:
            if op.body is None:
                answer = await handler(ctx, caller, params)
            else:
                answer = await handler(ctx, caller, params, given["body"])
        except CallerGone:
            return Response(status_code=499)  # nobody reads it: the client went away
        return respond(op, answer)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    for name, field in op.params.model_fields.items():
        where = Path if name in op.path_names else Query
        marker = where(description=field.description)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[(field.annotation, *field.metadata, marker)],
                default=inspect.Parameter.empty if field.is_required() else field.default,
            )
        )
    if op.body is not None:
        parameters.append(
            inspect.Parameter(
                "body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[op.body, Body()]
            )
        )
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = op.name
    return endpoint


def respond(op: Operation, answer: BaseModel | Answer | None) -> Response:
    """The HTTP answer for what an implementation returned."""
    status = op.status
    if isinstance(answer, Answer):
        status, answer = answer.status, answer.body
    if answer is None:
        return Response(status_code=204 if status == op.status else status)
    return Response(answer.__pydantic_serializer__.to_json(answer), status, media_type=_JSON)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (FastAPI read the request's body already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _responses(op: Operation) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = dict(COMMON_RESPONSES)
    for status in op.errors:
        responses[status] = {"model": ErrorOut, "description": _ERROR_MEANING[status]}
    for status, meaning in op.also.items():
        responses[status] = {"model": op.answer, "description": meaning}
    if op.produces is not None:
        responses.setdefault(op.status, {})["links"] = _links(op)
    return responses


_ERROR_MEANING = {
    404: "No such task, worker or schedule.",
    409: "The operation does not fit the current state.",
}


def _links(source: Operation) -> dict[str, dict[str, Any]]:
    """OpenAPI links from an answer to the operations the id in it feeds: fuzzers follow them to
    call those operations with real ids; readers see what to do next."""
    assert source.produces is not None
    param, pointer = source.produces
    return {
        _camel(op.name): {
            "operationRef": f"#/paths/{op.url_path.replace('~', '~0').replace('/', '~1')}/"
            f"{op.method.lower()}",
            "parameters": {param: f"$response.body#{pointer}"},
        }
        for op in operations()
        if param in op.path_names and op is not source
    }


def _camel(name: str) -> str:
    return re.sub(r"(?:^|_)(\w)", lambda m: m.group(1).upper(), name)
