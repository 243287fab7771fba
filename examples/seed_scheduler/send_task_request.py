"""Seed 000's first script: create a number of mock tasks and send them to the scheduler.

    python examples/seed_scheduler/send_task_request.py [--server URL] [--count N]

Submits N mock tasks (short sleeps, echoes and SHA-256 digests, with mixed priorities) in one
atomic batch through the Python SDK, and prints one line per task: its id, name and handler.
The server comes from --server, else CONVEYOR_URL, else http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import os

from conveyor.client import Client
from conveyor.core.spec import TaskSpec

DEFAULT_URL = "http://127.0.0.1:8000"


def mock_tasks(count: int) -> list[TaskSpec]:
    """Three kinds of harmless work, in turn, with priorities 0 to 4."""
    specs = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            handler, args = "sleep", [0.05]
        elif kind == 1:
            handler, args = "echo", [{"mock": i}]
        else:
            handler, args = "sha256", [f"mock task {i}"]
        specs.append(
            TaskSpec(
                handler=handler,
                args=args,
                name=f"mock-{i}",
                priority=i % 5,
                timeout_s=30,
                labels={"source": "send_task_request"},
            )
        )
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("CONVEYOR_URL", DEFAULT_URL))
    parser.add_argument("--count", type=int, default=10, help="how many tasks (default 10)")
    options = parser.parse_args()
    with Client(options.server) as client:
        tasks = client.submit_batch(mock_tasks(options.count))
    print(f"submitted {len(tasks)} tasks to {options.server}")
    for task in tasks:
        print(f"{task.id}  {task.name}  {task.handler}")


if __name__ == "__main__":
    main()
