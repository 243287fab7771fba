"""Seed 000's third script: list every task with its status.

    python examples/seed_scheduler/send_status_request.py [--server URL] [--state STATE]

Pages through GET /api/v1/tasks with the Python SDK and prints one line per task (id, state,
name, handler, and its result or error), then the count of tasks in each state.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from conveyor.client import Client

DEFAULT_URL = "http://127.0.0.1:8000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("CONVEYOR_URL", DEFAULT_URL))
    parser.add_argument("--state", default=None, help="only tasks in this state")
    options = parser.parse_args()
    counts: Counter[str] = Counter()
    with Client(options.server) as client:
        for task in client.iter_tasks(state=options.state):
            counts[task.state.value] += 1
            outcome = task.error or ("" if task.result is None else json.dumps(task.result))
            if len(outcome) > 60:
                outcome = outcome[:57] + "..."
            print(
                f"{task.id}  {task.state.value:<10} {task.name or '-':<16} {task.handler:<12} {outcome}"
            )
    total = sum(counts.values())
    summary = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
    print(f"{total} tasks" + (f": {summary}" if summary else ""))


if __name__ == "__main__":
    main()
