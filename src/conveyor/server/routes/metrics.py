"""Prometheus metrics: a route, not an operation (text in Prometheus' format, not JSON)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from conveyor.server.context import Ctx

router = APIRouter(tags=["system"])


@router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics (text exposition format); see conveyor.server.metrics for the list."""
    unschedulable = await ctx.call(ctx.unschedulable.get, ctx.engine)
    body = await ctx.call(ctx.metrics.scrape, ctx.engine, unschedulable=unschedulable)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
