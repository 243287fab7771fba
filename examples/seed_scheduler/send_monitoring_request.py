"""Seed 000's second script: ask the scheduler for monitoring data and print it.

    python examples/seed_scheduler/send_monitoring_request.py [--server URL] [--json]

Prints CPU, RAM, GPU and disk figures of the server's host and of every live worker, from
GET /api/v1/monitor (through the Python SDK). --json prints the raw answer instead.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

from conveyor.client import Client

DEFAULT_URL = "http://127.0.0.1:8000"
GIB = 1024**3


def describe(metrics: Mapping[str, Any]) -> list[str]:
    """The four figures the seed asks for, one line each; 'n/a' where the host gave none."""
    cpu = metrics.get("cpu_percent")
    lines = [
        f"  CPU:  {cpu:.1f}% of {metrics.get('cpu_count', '?')} cores"
        if cpu is not None
        else "  CPU:  n/a"
    ]
    if "memory_total_bytes" in metrics:
        used, total = metrics["memory_used_bytes"] / GIB, metrics["memory_total_bytes"] / GIB
        lines.append(f"  RAM:  {metrics['memory_percent']:.1f}% ({used:.1f} of {total:.1f} GiB)")
    else:
        lines.append("  RAM:  n/a")
    gpus = metrics.get("gpus") or []
    if gpus:
        for gpu in gpus:
            lines.append(f"  GPU:  {json.dumps(gpu)}")
    else:
        lines.append("  GPU:  none")
    if "disk_total_bytes" in metrics:
        free = (metrics["disk_total_bytes"] - metrics["disk_used_bytes"]) / GIB
        lines.append(
            f"  Disk: {metrics['disk_percent']:.1f}% used at {metrics['disk_path']} ({free:.1f} GiB free)"
        )
    else:
        lines.append("  Disk: n/a")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("CONVEYOR_URL", DEFAULT_URL))
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    options = parser.parse_args()
    with Client(options.server) as client:
        monitor = client.monitor()
    if options.json:
        print(monitor.model_dump_json(indent=2))
        return
    print(f"server ({monitor.server.get('host', '?')}):")
    print("\n".join(describe(monitor.server)))
    for worker in monitor.workers:
        metrics = worker.get("metrics")
        print(f"worker {worker.get('name')} ({worker.get('host')}, {worker.get('state')}):")
        print("\n".join(describe(metrics if isinstance(metrics, dict) else {})))
    if not monitor.workers:
        print("no live workers")


if __name__ == "__main__":
    main()
