"""Bulk actions as the server's background jobs (conveyor.engine.bulk says what they are).

Each action asked of this server runs as an asyncio task that hands one chunk at a time to a
worker thread (`Engine.run_bulk_chunk`) and goes back to the event loop between chunks: the loop
never waits on the database, and other writers get the database between two chunks. The timers
(`Timers` owns one BulkJobs) also look, every pass, for actions whose runner's claim has lapsed
(their server crashed or stopped) and take them up, so an action always finishes on some
server. A server that stops gracefully gives its claims up, so that another takes them at once.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from functools import partial

from anyio import to_thread

from conveyor.engine import Engine
from conveyor.errors import NotFoundError, StoreError
from conveyor.ids import new_id

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class BulkJobs:
    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.runner = f"server-{new_id()}"
        """This server's name on the records it claims."""
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._watch is None:
            self._stopping = asyncio.Event()
            self._watch = asyncio.get_running_loop().create_task(self._look(), name="bulk-jobs")

    async def stop(self) -> None:
        """Let each job finish the chunk it is in (a thread cannot be cancelled), then give up
        this server's claims."""
        self._stopping.set()
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch
        jobs = list(self._jobs)
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)
        for bulk_id in jobs:
            with suppress(Exception):  # the claim lapses by itself anyway
                await to_thread.run_sync(self.engine.release_bulk, bulk_id, self.runner)

    def run(self, bulk_id: str, *, take_over: bool = False) -> None:
        """Run that action's chunks here, unless this server already does."""
        if bulk_id in self._jobs or self._stopping.is_set():
            return
        job = asyncio.get_running_loop().create_task(
            self._drive(bulk_id, take_over), name=f"bulk-{bulk_id}"
        )
        self._jobs[bulk_id] = job
        job.add_done_callback(lambda _: self._jobs.pop(bulk_id, None))

    async def _drive(self, bulk_id: str, take_over: bool) -> None:
        busy = 0
        while not self._stopping.is_set():
            chunk = partial(self.engine.run_bulk_chunk, bulk_id, self.runner, take_over=take_over)
            try:
                _, more = await to_thread.run_sync(chunk)
            except NotFoundError:
                return
            except StoreError as exc:  # locked, unreachable: try again shortly, as timers do
                busy += 1
                log.warning(
                    "bulk action chunk failed; retrying",
                    extra={"bulk": bulk_id, "error": str(exc)},
                )
                with suppress(TimeoutError):
                    async with asyncio.timeout(min(MAX_BACKOFF_S, 0.1 * 2**busy)):
                        await self._stopping.wait()
                continue
            except Exception as exc:  # a bug: say so on the record, and let its claim lapse
                log.exception("bulk action chunk crashed", extra={"bulk": bulk_id})
                with suppress(Exception):
                    await to_thread.run_sync(self.engine.bulk_failed, bulk_id, str(exc))
                return
            busy = 0
            take_over = False
            if not more:
                return
            await asyncio.sleep(0)  # the loop's other work, between two chunks

    async def _look(self) -> None:
        while not self._stopping.is_set():
            try:
                for bulk_id in await to_thread.run_sync(self.engine.unclaimed_bulks):
                    self.run(bulk_id)
            except StoreError as exc:
                log.warning("cannot look for bulk actions to resume", extra={"error": str(exc)})
            except Exception:  # a bug must not stop the next passes
                log.exception("looking for bulk actions to resume crashed")
            with suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._stopping.wait()
