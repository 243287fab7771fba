"""procrastinate on PostgreSQL: two `procrastinate worker` processes with `--concurrency` set to
the slots per worker (LISTEN/NOTIFY on, its default). A submit is one `defer`. procrastinate
keeps no results and has no wait: a user polls `job_manager.get_job_status`, which the
benchmark does every millisecond (so W2 is not held back by a coarser poll). It has no fan-in
(no dependencies between jobs, no results to pass on): W4 is n/a."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.postgres import Schema, durability
from benchmarks.processes import WorkerProcesses
from benchmarks.workloads import Sizes, Step

POLL_S = 0.001
TIMEOUT_S = 600


class ProcrastinateSystem:
    name = "procrastinate"
    wait_method = "get_job_status per job, polled every 1 ms (no result store, no wait)"
    returns_results = False
    fan_in_missing = "no fan-in: jobs cannot depend on jobs, and no result is kept to pass on"

    def __init__(self, directory: Path, sizes: Sizes, *, postgres: str) -> None:
        self.sizes = sizes
        self.durability = durability(postgres)
        self._schema = Schema(postgres, "procrastinate")
        self._env = {"BENCH_PROCRASTINATE_URL": self._schema.url}
        os.environ.update(self._env)
        from benchmarks import procrastinate_app

        module = importlib.reload(procrastinate_app)  # the URL is read at import
        self._app = module.app
        self._noop, self._sleep = module.noop, module.sleep
        self._app.open()
        self._open = True
        self._app.schema_manager.apply_schema()
        self._workers = WorkerProcesses(directory, self.name)

    def start(self, slots_per_worker: int) -> None:
        commands = [
            [
                "-m", "procrastinate", "--app=benchmarks.procrastinate_app.app",
                "--log-level", "warning", "worker",
                "--concurrency", str(slots_per_worker), "--name", f"bench-{i}",
            ]
            for i in range(self.sizes.workers)
        ]  # fmt: skip
        self._workers.start(commands, self._env)
        connector = self._app.connector.get_sync_connector()

        def registered() -> bool:
            row = connector.execute_query_one("SELECT count(*) AS n FROM procrastinate_workers")
            return int(row["n"]) >= self.sizes.workers

        self._workers.wait_ready(registered)

    def stop(self) -> None:
        self._workers.stop()
        if self._open:
            self._app.close()
            self._schema.drop()
            self._open = False

    def submit_noop(self, x: int) -> object:
        return self._noop.defer(x=x)

    def submit_sleep(self, seconds: float) -> object:
        return self._sleep.defer(seconds=seconds)

    def wait_one(self, handle: object) -> object:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            status = self._app.job_manager.get_job_status(handle)
            if status.value == "succeeded":
                return None
            if status.value in ("failed", "cancelled", "aborted"):
                raise RuntimeError(f"procrastinate job {handle} ended {status.value}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"procrastinate job {handle} still {status.value}")
            time.sleep(POLL_S)

    def wait_all(self, handles: Sequence[object]) -> list[object]:
        return [self.wait_one(handle) for handle in handles]

    def fan_in(self, n: int) -> int:
        raise NotImplementedError(self.fan_in_missing)

    def extra_steps(self) -> list[Step]:
        return []
