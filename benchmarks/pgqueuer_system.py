"""pgqueuer on PostgreSQL: two worker processes (`pgq run`, see benchmarks/pgqueuer_app.py). pgqueuer has no per-worker slot count of one:
`--max-concurrent-tasks` must be at least twice `--batch-size`, so one slot is `--batch-size 1
--max-concurrent-tasks 2` and 16 slots `--batch-size 8 --max-concurrent-tasks 16`. A submit is
one `Queries.enqueue`; waits go through pgqueuer's CompletionWatcher (LISTEN/NOTIFY on status
changes), W1 and W3 gathering every job's future at once. pgqueuer keeps no results and has no
fan-in: W4 is n/a."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from benchmarks.postgres import Schema, durability
from benchmarks.processes import WorkerProcesses
from benchmarks.workloads import Sizes, Step

TIMEOUT_S = 600
# The watcher waits `debounce` after a change before it queries the statuses (default 50 ms,
# which would be W2's floor); 1 ms keeps the coalescing and costs W2 little.
DEBOUNCE = timedelta(milliseconds=1)


class PgqueuerSystem:
    name = "pgqueuer"
    wait_method = "CompletionWatcher.wait_for, all futures gathered (no result store)"
    returns_results = False
    fan_in_missing = "no fan-in: jobs cannot depend on jobs, and no result is kept to pass on"

    def __init__(self, directory: Path, sizes: Sizes, *, postgres: str) -> None:
        self.sizes = sizes
        self.durability = durability(postgres)
        self._schema = Schema(postgres, "pgqueuer")
        self._env = {"BENCH_PGQUEUER_URL": postgres, "BENCH_PGQUEUER_SCHEMA": self._schema.name}
        os.environ.update(self._env)
        self._workers = WorkerProcesses(directory, self.name)
        # pgqueuer's API is async: one event loop for the benchmark's side, kept open.
        self._loop = asyncio.Runner()
        self._loop.run(self._open())

    async def _open(self, install: bool = True) -> None:
        from pgqueuer.core.completion import CompletionWatcher
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        from benchmarks.pgqueuer_app import connect

        self._connection = await connect()
        self._driver = AsyncpgDriver(self._connection)
        self._queries = Queries(self._driver)
        if install:
            await self._queries.install()
        self._watcher = CompletionWatcher(self._driver, queries=self._queries, debounce=DEBOUNCE)
        await self._watcher.__aenter__()

    def start(self, slots_per_worker: int) -> None:
        if self._connection.is_closed():  # closed by a fault on the shared database: reopen
            self._loop.run(self._open(install=False))
        batch = max(1, slots_per_worker // 2)
        command = ["-m", "benchmarks.pgqueuer_app", str(batch), str(2 * batch)]
        self._workers.start([command] * self.sizes.workers, self._env)
        # pgqueuer has no registry of idle workers: ready once a job has gone through, and a
        # moment for the other worker to reach its LISTEN.
        probe = self.submit_noop(0)

        def probe_done() -> bool:
            ((_, status),) = self._loop.run(self._queries.job_status([probe]))  # type: ignore[list-item]
            return status == "successful"

        self._workers.wait_ready(probe_done)
        self._loop.run(asyncio.sleep(1))

    def stop(self) -> None:
        self._workers.stop()
        if self._loop is not None:
            if not self._connection.is_closed():
                self._loop.run(self._watcher.__aexit__(None, None, None))
            self._loop.close()
            self._loop = None  # type: ignore[assignment]
            self._schema.drop()

    def submit_noop(self, x: int) -> object:
        (job_id,) = self._loop.run(self._queries.enqueue("noop", str(x).encode()))
        return job_id

    def submit_sleep(self, seconds: float) -> object:
        (job_id,) = self._loop.run(self._queries.enqueue("sleep", str(seconds).encode()))
        return job_id

    def wait_one(self, handle: object) -> object:
        return self.wait_all([handle])[0]

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        async def gathered() -> list[str]:
            futures = [self._watcher.wait_for(job_id) for job_id in handles]  # type: ignore[arg-type]
            return await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)

        statuses = self._loop.run(gathered())
        failed = [s for s in statuses if s != "successful"]
        if failed:
            raise RuntimeError(f"{len(failed)} pgqueuer jobs ended {failed[0]}")
        return [None] * len(statuses)

    def fan_in(self, n: int) -> int:
        raise NotImplementedError(self.fan_in_missing)

    def extra_steps(self) -> list[Step]:
        return []
