"""The pgqueuer application the benchmark compares with, on PostgreSQL.

Workers start as `python -m benchmarks.pgqueuer_app BATCH_SIZE MAX_CONCURRENT_TASKS`, which is
`pgq run benchmarks.pgqueuer_app:create --batch-size ... --max-concurrent-tasks ...` through
`pgqueuer.run`, the CLI's own function: the `pgq` command of pgqueuer 1.6 fails at start with
the typer this project pins (its --log-level parser hands a string where an enum is due). The
database URL comes from BENCH_PGQUEUER_URL and the run's own schema from
BENCH_PGQUEUER_SCHEMA, set by the benchmark for itself and the processes it starts. Entrypoints
are async functions over an asyncpg connection, as pgqueuer's README writes them; the sleep is
`asyncio.sleep`, which holds its slot for 10 ms as a blocking sleep would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(
        os.environ.get("BENCH_PGQUEUER_URL", "postgresql://127.0.0.1/test"),
        server_settings={"search_path": os.environ.get("BENCH_PGQUEUER_SCHEMA", "public")},
    )


@asynccontextmanager  # pgqueuer 1.6's runner wants a context manager, not the README's coroutine
async def create() -> AsyncIterator[PgQueuer]:
    connection = await connect()
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """pgqueuer keeps no results: the benchmark waits for the job's status."""

    @pgq.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        await asyncio.sleep(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await connection.close()


if __name__ == "__main__":
    batch_size, max_concurrent_tasks = map(int, sys.argv[1:3])
    asyncio.run(
        pgqueuer.run(create, batch_size=batch_size, max_concurrent_tasks=max_concurrent_tasks)
    )
