"""Conveyor under the benchmark: `conveyor server` on a fresh database and two `conveyor worker`
processes, driven through the blocking `conveyor.client.Client` as the README teaches: one
`submit` per task, `result(id, timeout_s=...)` to wait (or the SDK's bulk wait, once it has
one), `submit_batch` with `$result` references for W4's fan-in.

Tuned paths are extra rows, labelled: the coalescing AsyncClient and one `submit_batch` for W1,
`Client.run` (submit and wait in one request) for W2. DAG and Scale are Conveyor's own
(benchmarks/conveyor_scale.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks import conveyor_scale
from benchmarks.postgres import durability
from benchmarks.workloads import Recorder, Sizes, Step, record_latencies
from conveyor.client import AsyncClient, Client
from conveyor.core.spec import TaskSpec
from conveyor.testing import Cluster

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600

SQLITE_DURABILITY = {
    "normal": "SQLite WAL, --durability normal: survives any process crash (kill -9), not power loss",
    "full": "SQLite WAL, --durability full: survives power loss too",
}


def bulk_wait_available() -> bool:
    """Whether the SDK has a bulk wait (`Client.wait(ids)`); W1 and W3 use it when it does.
    Probed, not imported, so that the benchmark runs on the SDK before and after it."""
    return callable(getattr(Client, "wait", None))


class ConveyorSystem:
    returns_results = True
    fan_in_missing = None

    def __init__(
        self,
        directory: Path,
        sizes: Sizes,
        *,
        postgres: str | None = None,
        sqlite_durability: str = "normal",
        tuned: bool = True,
    ) -> None:
        """On PostgreSQL with `postgres`, else SQLite at `sqlite_durability`. With `tuned`, the
        labelled extra rows (tuned paths, DAG, Scale) run too."""
        if postgres is None:
            self.name = "conveyor-sqlite" + ("" if sqlite_durability == "normal" else f"-{sqlite_durability}")  # fmt: skip
            self.durability = SQLITE_DURABILITY[sqlite_durability]
            self.server_args: tuple[str, ...] = ("--durability", sqlite_durability)
        else:
            self.name = "conveyor-postgres"
            self.durability = durability(postgres)
            self.server_args = ()
        self.wait_method = (
            "Client.wait(ids) (bulk)" if bulk_wait_available() else "Client.result per task"
        )
        self.sizes = sizes
        self.tuned = tuned
        self.directory = directory
        self._postgres = postgres
        self._schemas: list[str] = []
        self._cluster: Cluster | None = None
        self._client: Client | None = None

    # ---- set-up -----------------------------------------------------------------------------

    def _db(self, label: str) -> str:
        if self._postgres is None:
            return str(self.directory / f"{self.name}-{label}.db")
        schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        self._schemas.append(schema)
        separator = "&" if "?" in self._postgres else "?"
        return f"{self._postgres}{separator}schema={schema}"

    def start_server(self, label: str) -> Cluster:
        self.stop()
        cluster = Cluster(
            self.directory, db=self._db(label), lease_s=30.0, cwd=REPO,
            server_args=self.server_args,
        )  # fmt: skip
        cluster.start_server()
        self._cluster = cluster
        self._client = Client(cluster.url, timeout_s=120)
        return cluster

    def start(self, slots_per_worker: int) -> None:
        cluster = self._cluster or self.start_server("main")
        for name in list(cluster.workers):
            cluster.stop_worker(name)
            del cluster.workers[name]
        for i in range(self.sizes.workers):
            cluster.start_worker(
                f"bench-{slots_per_worker}-{i}",
                concurrency=slots_per_worker,
                allow_modules=("benchmarks",),
                extra_args=self.sizes.worker_args,
            )

    @property
    def client(self) -> Client:
        assert self._client is not None, "start() first"
        return self._client

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None, "start() first"
        return self._cluster

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self._postgres is not None and self._schemas:
            import psycopg

            from conveyor.store import split_schema

            conninfo, _ = split_schema(self._postgres)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for schema in self._schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            self._schemas.clear()

    # ---- the calls the workloads make -------------------------------------------------------

    def submit_noop(self, x: int) -> object:
        return self.client.submit("echo", x).id

    def submit_sleep(self, seconds: float) -> object:
        return self.client.submit("sleep", seconds).id

    def wait_one(self, handle: object) -> object:
        outcome = self.client.result(str(handle), timeout_s=TIMEOUT_S)
        if outcome.state != "succeeded":
            raise RuntimeError(f"task {handle} ended {outcome.state}: {outcome.error}")
        return outcome.result

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        ids = [str(handle) for handle in handles]
        if bulk_wait_available():
            outcomes = list(self.client.wait(ids))  # type: ignore[attr-defined]
            failed = [o for o in outcomes if o.state != "succeeded"]
            if failed:
                raise RuntimeError(f"{len(failed)} tasks failed, e.g. {failed[0]}")
            return [o.result for o in outcomes]
        return [self.wait_one(task_id) for task_id in ids]

    def fan_in(self, n: int) -> int:
        specs = [TaskSpec(handler="echo", args=[i], name=f"n{i}") for i in range(n)]
        refs = [{"$result": f"n{i}"} for i in range(n)]  # each implies a dependency
        specs.append(TaskSpec(handler="benchmarks.handlers:total", args=[refs], name="sum"))
        tasks = self.client.submit_batch(specs)
        return int(self.wait_one(tasks[-1].id))  # type: ignore[call-overload]

    # ---- labelled extra rows ----------------------------------------------------------------

    def extra_steps(self) -> list[Step]:
        if not self.tuned:
            return []
        return [
            Step("W1/async", 1, self.w1_coalesced),
            Step("W1/batch", 1, self.w1_batch),
            Step("W2/run", 1, self.w2_run),
            Step("DAG", 1, lambda record, sizes: conveyor_scale.dag(self, record, sizes), repeated=False),
            Step("Scale", 0, lambda record, sizes: conveyor_scale.scale(self, record, sizes), repeated=False),
        ]  # fmt: skip

    def w1_coalesced(self, record: Recorder, sizes: Sizes) -> None:
        """W1 through AsyncClient with 32 submits in flight, which it merges into batch
        requests (tuned: not what the blocking Client does)."""
        n = sizes.w1_tasks

        async def submit_all() -> list[str]:
            gate = asyncio.Semaphore(sizes.submit_concurrency)
            async with AsyncClient(self.cluster.url, timeout_s=120) as client:

                async def one(i: int) -> str:
                    async with gate:
                        return (await client.submit("echo", i)).id

                return await asyncio.gather(*(one(i) for i in range(n)))

        self._w1_tuned(record, n, f"AsyncClient, {sizes.submit_concurrency} submits in flight, coalesced", lambda: asyncio.run(submit_all()))  # fmt: skip

    def w1_batch(self, record: Recorder, sizes: Sizes) -> None:
        """W1 as one `submit_batch` call (tuned: a batch, not a submit per task)."""
        specs = [TaskSpec(handler="echo", args=[i]) for i in range(sizes.w1_tasks)]
        self._w1_tuned(record, len(specs), "one submit_batch call", lambda: [t.id for t in self.client.submit_batch(specs)])  # fmt: skip

    def _w1_tuned(self, record: Recorder, n: int, how: str, submit: object) -> None:
        started = time.perf_counter()
        ids = submit()  # type: ignore[operator]
        submitted_s = time.perf_counter() - started
        values = self.wait_all(ids)
        elapsed_s = time.perf_counter() - started
        if values != list(range(n)):
            raise RuntimeError(f"{self.name}: tuned W1 ({how}) returned other results")
        workload = "W1 tuned"
        record(workload, f"{how}: submit rate", n / submitted_s, unit="tasks/s", higher_is_better=True)  # fmt: skip
        record(workload, f"{how}: end to end", n / elapsed_s, unit="tasks/s", higher_is_better=True)  # fmt: skip

    def w2_run(self, record: Recorder, sizes: Sizes) -> None:
        """W2 with `Client.run`: submit and wait in one request (a call the README teaches,
        but one request where the peers make two: labelled)."""
        times: list[float] = []
        for i in range(sizes.w2_rounds):
            started = time.perf_counter()
            outcome = self.client.run("echo", i, wait_s=30)
            times.append(time.perf_counter() - started)
            if outcome.result != i:
                raise RuntimeError(f"{self.name}: run returned {outcome}")
        record_latencies(record, "W2 tuned", " (Client.run)", times)
