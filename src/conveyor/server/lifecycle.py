"""What a server runs for as long as it serves, started and stopped in one place.

`serving(ctx)` is the server's life: the HTTP app's lifespan (conveyor.server.app) and the
in-process server (conveyor.server.local) both run inside it, so both have the same waiters,
group commits, listeners, timers and monitoring, started in this order and stopped in the
reverse one: nothing that may still write (the timers' pass in progress, the last group
commit) outlives what it writes through, and the store is closed, by the caller, only after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conveyor.server.context import ServerContext
from conveyor.server.shared_changes import shared_changes


@asynccontextmanager
async def serving(ctx: ServerContext) -> AsyncIterator[None]:
    """Run the server's background work on the running event loop until the block ends."""
    engine = ctx.engine
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
