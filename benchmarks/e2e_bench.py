"""End to end through the REST API: `conveyor server --workers 2` on a fresh SQLite file.

    python benchmarks/e2e_bench.py [--tasks 2000] [--latency-rounds 300]

Prints one JSON line per measurement: no-op tasks/s (one submit call each, and one batch call),
and submit -> result latency of one task at a time (p50/p95/p99).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.testing import free_port, wait_until


def start_server(directory: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "server",
            "--db",
            str(directory / "bench.db"),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return (
                len(
                    [
                        w
                        for w in httpx.get(f"{url}/api/v1/workers", timeout=1).json()["workers"]
                        if w["state"] == "alive"
                    ]
                )
                == workers
            )
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the server and its workers")
    return server, url


def wait_all_done(client: Client, total: int) -> None:
    wait_until(
        lambda: client.status().counts.get("succeeded", 0) >= total,
        600,
        f"{total} tasks to succeed",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-rounds", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-e2e-") as directory:
        server, url = start_server(Path(directory), args.workers)
        try:
            with Client(url) as client:
                done = 0
                started = time.perf_counter()
                for i in range(args.tasks):
                    client.submit("echo", i)
                submitted = time.perf_counter() - started
                wait_all_done(client, done + args.tasks)
                elapsed = time.perf_counter() - started
                done += args.tasks
                print(
                    json.dumps(
                        {
                            "bench": "noop_single_submits",
                            "tasks": args.tasks,
                            "submit_per_s": round(args.tasks / submitted),
                            "end_to_end_per_s": round(args.tasks / elapsed),
                        }
                    ),
                    flush=True,
                )

                started = time.perf_counter()
                client.submit_batch([TaskSpec(handler="echo", args=[i]) for i in range(args.tasks)])
                wait_all_done(client, done + args.tasks)
                elapsed = time.perf_counter() - started
                done += args.tasks
                print(
                    json.dumps(
                        {
                            "bench": "noop_batch_submit",
                            "tasks": args.tasks,
                            "end_to_end_per_s": round(args.tasks / elapsed),
                        }
                    ),
                    flush=True,
                )

                times = []
                for i in range(args.latency_rounds):
                    t = time.perf_counter()
                    task = client.submit("echo", i)
                    outcome = client.result(task.id, wait_s=10)
                    times.append(time.perf_counter() - t)
                    assert outcome.done
                times.sort()
                print(json.dumps({
                    "bench": "submit_to_result_latency", "rounds": len(times),
                    "p50_ms": round(statistics.median(times) * 1000, 2),
                    "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 2),
                    "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
                }), flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
