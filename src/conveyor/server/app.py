"""The server: every operation (conveyor.api.operations) over REST and over the persistent
connection, both served by the operations' one implementation each (conveyor.server.operations).

REST routes are built from the declarations (`rest.py`), and so are /openapi.json and the auth
table; the persistent connection (`stream.py`) is a WebSocket at STREAM_PATH on the same port.
Writes on the path every task takes share group commits (`conveyor.engine.group_commit`); other
engine calls run in a worker thread, so the event loop never waits on the database. Engine events
reach the loop through `Waiters` (long-poll leases, result waits); timers and the rest of the
server's background work run with the app's lifespan (`lifecycle.serving`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import WebSocketRoute

from conveyor.api.frames import STREAM_PATH
from conveyor.api.operations import operations
from conveyor.engine import Engine
from conveyor.server import auth, docs, errors, rest
from conveyor.server.bodylimit import BodyLimit
from conveyor.server.context import ServerContext
from conveyor.server.dashboard import page as dashboard_page
from conveyor.server.lifecycle import serving
from conveyor.server.operations import handlers
from conveyor.server.requestid import RequestId
from conveyor.server.routes import metrics as metrics_route
from conveyor.server.settings import ServerSettings
from conveyor.server.stream import StreamEndpoint
from conveyor.server.version import package_version


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    ctx = ServerContext.build(engine, settings or ServerSettings(), version=package_version())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serving(ctx):
            yield

    app = FastAPI(
        title="Conveyor",
        summary="A durable, distributed task scheduler.",
        version=package_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks ask the global providers on every request, a tenth of
        # a submit's time; the server's metrics are its own (/metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.conveyor = ctx
    implementations = handlers()
    rest.include_operations(app, ctx, implementations)
    # The routes that are not operations, with their access.
    others: list[tuple[APIRouter, auth.Access | None]] = [
        (metrics_route.router, auth.CLIENT),
        (docs.router, auth.OPEN),
        (dashboard_page.router, auth.OPEN),  # the page; its API calls carry the token
    ]
    for router, _ in others:
        app.include_router(router)
    app.router.routes.append(WebSocketRoute(STREAM_PATH, StreamEndpoint(ctx, implementations)))
    # After every route: a mount would shadow the routes registered after it.
    app.mount(dashboard_page.ASSETS_PATH, dashboard_page.Assets(), name="dashboard-assets")
    # Each API route with what it needs: an operation's access as declared, the others' above.
    by_name = {op.name: op for op in operations()}
    routes = [
        (route, auth.Guarded.of(by_name[route.name]))
        for route in app.routes
        if isinstance(route, APIRoute)
    ] + [
        (route, auth.Guarded(access))
        for router, access in others
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    errors.install(app, [route for route, _ in routes])
    index = auth.AccessIndex(
        routes,
        open_paths=[app.openapi_url or "/openapi.json"],
        open_prefixes=[dashboard_page.ASSETS_PATH],
    )
    # Added last, so outermost: a request without a valid token is refused before its body is read.
    app.add_middleware(BodyLimit, max_body_bytes=ctx.settings.max_body_bytes)
    app.add_middleware(
        auth.Authorizer, tokens=ctx.settings.tokens, index=index, identities=ctx.identities
    )
    # Outermost of all: a refused request's log line has its id too.
    app.add_middleware(RequestId)
    if ctx.settings.tokens:
        _document_tokens(app, index)
    return app


def _document_tokens(app: FastAPI, index: auth.AccessIndex) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            auth.document(generate(), index)  # generate() caches the schema it returns
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def request_shutdown(app: FastAPI) -> None:
    """From any thread: answer every waiting long-poll now, so that the server can stop at once."""
    context(app).waiters.close_threadsafe()


def context(app: FastAPI) -> ServerContext:
    ctx = app.state.conveyor
    if not isinstance(ctx, ServerContext):
        raise TypeError("not an app made by create_app()")
    return ctx
