"""The HTTP server: a thin FastAPI layer over the engine.

The hot routes (submit, lease, report, result) take the fast lane (`fastlane.py`), whose writes
share group commits (`conveyor.engine.group_commit`); every other engine call runs in a worker
thread, so the event loop never waits on the database. Engine
events reach the loop through `Waiters` (long-poll leases, result waits); timers run with the
app's lifespan. The table of routers in `create_app` says who may call each (`auth`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from conveyor.api.schemas import API_PREFIX
from conveyor.engine import Engine
from conveyor.server import auth, docs, errors
from conveyor.server.bodylimit import BodyLimit
from conveyor.server.context import ServerContext
from conveyor.server.dashboard import api as dashboard_api
from conveyor.server.dashboard import page as dashboard_page
from conveyor.server.fastlane import FastLane
from conveyor.server.requesttext import RequestText
from conveyor.server.routes import schedules, system, tasks, workers
from conveyor.server.settings import ServerSettings
from conveyor.server.shared_changes import shared_changes


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    ctx = ServerContext.build(
        engine, settings or ServerSettings(), version=system.package_version()
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.waiters.start()
        ctx.commits.start()
        listeners = (ctx.finished.on_changes, ctx.metrics.on_changes, ctx.monitoring.on_changes)
        unsubscribes = [engine.events.subscribe(listener) for listener in listeners]
        ctx.timers.start()
        ctx.monitoring.start()
        try:
            with shared_changes(engine, ctx.waiters):
                yield
        finally:
            await ctx.monitoring.stop()
            await ctx.timers.stop()
            ctx.commits.stop()
            for unsubscribe in unsubscribes:
                unsubscribe()
            ctx.waiters.stop()
            ctx.host.close()

    app = FastAPI(
        title="Conveyor",
        summary="A durable, distributed task scheduler.",
        version=system.package_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks ask the global providers on every request, a tenth of
        # a submit's time; the server's metrics are its own (/metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.conveyor = ctx
    routers: list[tuple[str, APIRouter, auth.Access | None]] = [
        (API_PREFIX, tasks.router, auth.CLIENT),
        (API_PREFIX, workers.worker_router, auth.WORKER),  # register, heartbeat, lease, report
        (API_PREFIX, workers.router, auth.CLIENT),  # list and read workers
        (API_PREFIX, workers.self_router, auth.WORKER),  # deregister: admin, or itself
        (API_PREFIX, schedules.router, auth.CLIENT),
        (API_PREFIX, system.router, auth.CLIENT),  # status, monitor
        (API_PREFIX, dashboard_api.router, auth.CLIENT),
        ("", system.health_router, auth.OPEN),
        ("", system.metrics_router, auth.CLIENT),
        ("", docs.router, auth.OPEN),
        ("", dashboard_page.router, auth.OPEN),  # the page; its API calls carry the token
    ]
    for prefix, router, _ in routers:
        app.include_router(router, prefix=prefix)
    # After every route: a mount would shadow the routes registered after it.
    app.mount(dashboard_page.ASSETS_PATH, dashboard_page.Assets(), name="dashboard-assets")
    errors.install(app, [(prefix, router) for prefix, router, _ in routers])
    index = auth.AccessIndex(
        routers,
        open_paths=[app.openapi_url or "/openapi.json"],
        open_prefixes=[dashboard_page.ASSETS_PATH],
    )
    # Innermost of ours: the hot routes, once the token and the body's size have been checked.
    app.add_middleware(FastLane, context=ctx)
    # Added last, so outermost: a request without a valid token is refused before its body is read.
    app.add_middleware(BodyLimit, max_body_bytes=ctx.settings.max_body_bytes)
    app.add_middleware(RequestText)  # a NUL in the path or the query: 422, as in a body
    app.add_middleware(
        auth.Authorizer, tokens=ctx.settings.tokens, index=index, identities=ctx.identities
    )
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
