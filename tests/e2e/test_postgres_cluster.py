"""Several servers on one PostgreSQL database, with real server and worker processes."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.testing import Cluster, wait_until
from tests.helpers.postgres import postgres_url, terminate_connections

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
STEP = "tests.helpers.ledger_jobs:step"
__all__ = ["postgres_url"]  # the fixture, used by name


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db=postgres_url, cwd=ROOT)
    try:
        yield c
    finally:
        c.stop()


def test_a_long_poll_on_one_server_wakes_for_a_task_submitted_on_another(cluster: Cluster) -> None:
    first, second = cluster.start_server(), cluster.start_server()
    with httpx.Client(base_url=first + API, timeout=30) as a, Client(second) as b:
        worker = a.post(
            "/workers", json={"name": "w", "host": "h", "pid": 1, "concurrency": 1}
        ).json()
        answer: dict[str, object] = {}

        def long_poll() -> None:
            started = time.monotonic()
            answer["tasks"] = a.post(
                f"/workers/{worker['id']}/lease", json={"max": 1, "wait_s": 20}
            ).json()["tasks"]
            answer["seconds"] = time.monotonic() - started

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)  # let the poll reach its wait; the assertion below does not depend on it
        task = b.submit("echo", 1)
        poller.join(30)
        assert [t["task_id"] for t in answer["tasks"]] == [task.id]  # type: ignore[union-attr]
        assert answer["seconds"] < 5, "the long-poll waited for its deadline instead of being woken"


def test_a_result_wait_on_one_server_wakes_when_another_records_the_result(
    cluster: Cluster,
) -> None:
    first, second = cluster.start_server(), cluster.start_server()
    with Client(first) as a, httpx.Client(base_url=second + API, timeout=30) as b:
        task = a.submit("echo", "hi")
        worker = b.post(
            "/workers", json={"name": "w", "host": "h", "pid": 1, "concurrency": 1}
        ).json()
        (lease,) = b.post(f"/workers/{worker['id']}/lease", json={"max": 1}).json()["tasks"]
        waited: dict[str, float] = {}

        def wait() -> None:
            started = time.monotonic()
            assert a.result(task.id, wait_s=20).done
            waited["seconds"] = time.monotonic() - started

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        report = {
            "task_id": task.id,
            "token": lease["token"],
            "outcome": "succeeded",
            "result": "hi",
        }
        assert (
            b.post(f"/workers/{worker['id']}/report", json={"reports": [report]}).status_code == 200
        )
        waiter.join(30)
        assert waited["seconds"] < 5


def test_two_servers_run_2000_tasks_with_dependencies_and_priorities_once_each(
    cluster: Cluster, tmp_path: Path
) -> None:
    servers = [cluster.start_server(), cluster.start_server()]
    for i, server in enumerate(servers * 2):
        cluster.start_worker(
            f"w{i}",
            concurrency=2,
            server=server,
            allow_modules=("tests",),
            extra_args=["--prefetch", "2"],
        )
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    rng = random.Random(7)
    batches = []
    for b in range(20):  # 20 batches of 100: chains of 5 with random priorities
        specs = []
        for i in range(100):
            name = f"b{b}t{i}"
            parent = [f"b{b}t{i - 1}"] if i % 5 else []
            specs.append(
                TaskSpec(
                    handler=STEP,
                    name=name,
                    args=[str(ledger), name, 0],
                    depends_on=parent,
                    priority=rng.randint(-5, 5),
                )
            )
        batches.append(specs)
    clients = [Client(s) for s in servers]
    try:
        ids = [t.id for n, specs in enumerate(batches) for t in clients[n % 2].submit_batch(specs)]
        assert len(ids) == 2000
        wait_until(
            lambda: clients[0].status().counts.get("succeeded", 0) == 2000,
            240,
            "2,000 tasks to succeed",
        )
        status = clients[1].status()
        assert status.counts["succeeded"] == 2000 and sum(status.counts.values()) == 2000
    finally:
        for client in clients:
            client.close()
    starts = Counter(
        line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start ")
    )
    assert len(starts) == 2000 and set(starts.values()) == {1}, "a task ran twice or never"
    order = [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("end ")]
    position = {name: i for i, name in enumerate(order)}
    for b in range(20):
        for i in range(1, 100):
            if i % 5:
                assert position[f"b{b}t{i - 1}"] < position[f"b{b}t{i}"], (
                    "a task ran before its dependency"
                )


def test_killed_database_connections_give_503_then_recover_losing_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    server = cluster.start_server()
    cluster.start_worker("a", concurrency=2, allow_modules=("tests",))
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    base_url = os.environ["CONVEYOR_TEST_POSTGRES_URL"]
    statuses: Counter[int] = Counter()
    with Client(server) as client, httpx.Client(base_url=server + API, timeout=10) as http:
        ids = [
            t.id
            for t in client.submit_batch(
                [TaskSpec(handler=STEP, args=[str(ledger), f"t{i}", 0.01]) for i in range(300)]
            )
        ]
        wait_until(lambda: ledger.read_text().count("end ") >= 30, 60, "some tasks to finish")
        outage_ends = time.monotonic() + 3
        while (
            time.monotonic() < outage_ends
        ):  # keep killing the pool's connections as they come back
            terminate_connections(base_url, "")
            statuses[http.get("/status").status_code] += 1
            extra = http.post(
                "/tasks",
                json={"handler": STEP, "args": [str(ledger), f"x{sum(statuses.values())}", 0]},
            )
            statuses[extra.status_code] += 1
            if extra.status_code == 201:
                ids.append(extra.json()["id"])
            assert extra.status_code in (201, 503), extra.text
        assert statuses[503] > 0, "the outage never showed: the test proves nothing"
        assert all(code in (200, 201, 503) for code in statuses)
        wait_until(
            lambda: httpx.get(f"{server}/health").status_code == 200, 30, "the server to recover"
        )
        states = {i: client.result(i, timeout_s=120).state.value for i in ids}
    assert set(states.values()) == {"succeeded"}, Counter(states.values())


def test_a_schedule_fires_once_per_firing_with_two_servers(cluster: Cluster) -> None:
    first, second = cluster.start_server(), cluster.start_server()
    with Client(first) as a, Client(second) as b:
        a.add_schedule("every-second", "* * * * * *", TaskSpec(handler="echo", args=[1]))
        wait_until(lambda: b.schedules()[0].fired >= 6, 30, "six firings")
        a.remove_schedule("every-second")
        fired = b.status().counts
        tasks = list(a.iter_tasks(name="every-second"))
    keys = [t.key for t in tasks]
    assert len(keys) == len(set(keys)) == sum(fired.values()) >= 6, "a firing submitted two tasks"
    fires = sorted(datetime.fromisoformat(key.split(":", 2)[2]) for key in keys if key)
    gaps = {(later - earlier).total_seconds() for earlier, later in itertools.pairwise(fires)}
    assert gaps == {1.0}, "every firing, each second, once: none skipped, none twice"
