"""A real server and real workers, as separate processes on a temporary SQLite file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.testing import Cluster, pid_gone, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TESTS = ("tests",)  # workers may import the handlers in tests/helpers
STEP = "tests.helpers.ledger_jobs:step"
LONG_FIRST_TIME = "tests.helpers.chaos_jobs:long_first_time"
API = "/api/v1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, cwd=ROOT)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(cluster.url) as c:
        yield c


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    path = tmp_path / "ledger.txt"
    path.touch()
    return str(path)


def finish(client: Client, task_id: str, timeout_s: float = 60) -> TaskState:
    outcome = client.result(task_id, timeout_s=timeout_s)
    assert outcome.done, f"task {task_id} still {outcome.state.value} after {timeout_s}s"
    return outcome.state


def test_priority_order_on_a_single_slot_worker(
    cluster: Cluster, client: Client, ledger: str
) -> None:
    ids = {p: client.submit(STEP, ledger, f"p{p}", 0.01, priority=p).id for p in (1, 5, 3, 9, 7)}
    cluster.start_worker("solo", allow_modules=TESTS, concurrency=1)
    for task_id in ids.values():
        assert finish(client, task_id) is TaskState.SUCCEEDED
    # In the order the slot ran them (prefetched tasks share their lease's start time).
    with open(ledger, encoding="utf-8") as f:
        started = [line.split()[1] for line in f if line.startswith("start ")]
    assert started == ["p9", "p7", "p5", "p3", "p1"]


def test_three_step_chain_runs_in_order_and_passes_results(
    cluster: Cluster, client: Client
) -> None:
    cluster.start_worker("a", allow_modules=TESTS, concurrency=2)
    cluster.start_worker("b", allow_modules=TESTS, concurrency=2)
    tasks = client.submit_batch([
        TaskSpec(handler="echo", name="one", args=["abc"]),
        TaskSpec(handler="sha256", name="two", args=[{"$result": "one"}]),
        TaskSpec(handler="echo", name="three", kwargs={"text": {"$result": "one"}, "digest": {"$result": "two"}}),
    ])  # fmt: skip
    one, two, three = (t.id for t in tasks)
    assert finish(client, three) is TaskState.SUCCEEDED
    assert client.result(three).result == {
        "text": "abc",
        "digest": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }
    first, second, third = (client.get(i) for i in (one, two, three))
    assert first.finished_at and second.started_at and second.finished_at and third.started_at
    assert first.finished_at <= second.started_at and second.finished_at <= third.started_at


def test_run_at_does_not_start_early(cluster: Cluster, client: Client) -> None:
    cluster.start_worker("a", allow_modules=TESTS)
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    task = client.submit("echo", 1, run_at=run_at)
    assert client.get(task.id).state is TaskState.PENDING
    assert finish(client, task.id) is TaskState.SUCCEEDED
    started = client.get(task.id).started_at
    assert started is not None and started >= run_at


def test_timeout_ends_timed_out_and_kills_the_child(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    cluster.start_worker("a", allow_modules=TESTS)
    pid_file = tmp_path / "child.pid"
    task = client.submit(
        "tests.helpers.ledger_jobs:sleep_recording_pid", str(pid_file), 60, timeout_s=1
    )
    assert finish(client, task.id) is TaskState.TIMED_OUT
    child = int(pid_file.read_text())
    wait_until(lambda: pid_gone(child), 5, f"child {child} to be gone")
    (attempt,) = client.get(task.id).attempt_log
    assert attempt.outcome is not None and attempt.outcome.value == "timed_out"


def test_fails_twice_then_succeeds_after_three_attempts(
    cluster: Cluster, client: Client, ledger: str
) -> None:
    cluster.start_worker("a", allow_modules=TESTS)
    task = client.submit(
        "tests.helpers.ledger_jobs:fail_times",
        ledger,
        "flaky",
        2,
        max_retries=3,
        retry={"backoff_s": 0.1},
    )
    assert finish(client, task.id) is TaskState.SUCCEEDED
    detail = client.get(task.id)
    assert (detail.attempts, detail.retries_used) == (3, 2)
    assert [a.outcome.value for a in detail.attempt_log if a.outcome] == [
        "failed",
        "failed",
        "succeeded",
    ]


def test_cancel_a_queued_and_a_running_task(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    cluster.start_worker("a", allow_modules=TESTS)
    queued = client.submit("echo", 1, queue="nobody-serves-this")
    assert client.cancel(queued.id).state is TaskState.CANCELLED

    pid_file = tmp_path / "child.pid"
    running = client.submit("tests.helpers.ledger_jobs:sleep_recording_pid", str(pid_file), 60)
    wait_until(pid_file.exists, 30, "the long task to start")
    assert client.cancel(running.id).state is TaskState.CANCELLED
    child = int(pid_file.read_text())
    wait_until(lambda: pid_gone(child), 10, "the cancelled task's child to be killed")
    assert client.get(running.id).state is TaskState.CANCELLED
    assert client.get(queued.id).attempts == 0


def test_worker_killed_mid_task_runs_it_again_elsewhere(
    cluster: Cluster, client: Client, ledger: str
) -> None:
    # Long the first time, so that it still runs once the second worker has registered, however
    # slow that is on a loaded machine; at once when it runs again.
    markers = Path(ledger).parent / "markers"
    markers.mkdir()
    cluster.start_worker("first", allow_modules=TESTS)
    task = client.submit(LONG_FIRST_TIME, str(markers), "long", 120)
    wait_until(lambda: (markers / "long.pid").exists(), 30, "the task to start")
    cluster.start_worker("second", allow_modules=TESTS)
    holder = client.get(task.id).worker_id
    victim = next(name for name in ("first", "second") if _worker_id(client, name) == holder)
    cluster.kill(cluster.workers[victim])

    assert finish(client, task.id) is TaskState.SUCCEEDED
    detail = client.get(task.id)
    assert detail.retries_used == 0, "a dead worker must not spend the task's retries"
    assert [a.outcome.value for a in detail.attempt_log if a.outcome] == ["lost", "succeeded"]
    assert detail.attempt_log[1].worker_id == _worker_id(
        client, "second" if victim == "first" else "first"
    )


def _worker_id(client: Client, name: str) -> str | None:
    return next((w.id for w in client.workers() if w.name == name), None)


def test_server_killed_and_restarted_loses_nothing(
    cluster: Cluster, client: Client, ledger: str
) -> None:
    cluster.start_worker("a", allow_modules=TESTS, concurrency=2)
    cluster.start_worker("b", allow_modules=TESTS, concurrency=2)
    ids = [
        t.id
        for t in client.submit_batch(
            [TaskSpec(handler=STEP, args=[ledger, f"t{i}", 0.05]) for i in range(60)]
        )
    ]
    wait_until(lambda: Path(ledger).read_text().count("end ") >= 10, 60, "some tasks to finish")
    cluster.kill_server()
    cluster.start_server(0)  # the same database, the same port
    states = {i: finish(client, i, timeout_s=90) for i in ids}
    assert set(states.values()) == {TaskState.SUCCEEDED}, states
    ended = {
        line.split()[1] for line in Path(ledger).read_text().splitlines() if line.startswith("end ")
    }
    assert ended == {f"t{i}" for i in range(60)}
    assert all(cluster.workers[name].poll() is None for name in ("a", "b")), "workers must carry on"


def test_stale_fencing_token_gets_409_and_changes_nothing(cluster: Cluster, client: Client) -> None:
    with httpx.Client(base_url=cluster.url + API) as http:
        worker = http.post(
            "/workers",
            json={"name": "manual", "host": "test", "pid": os.getpid(), "concurrency": 1},
        ).json()
        task = client.submit("echo", 1)
        (lease,) = http.post(f"/workers/{worker['id']}/lease", json={"max": 1}).json()["tasks"]
        stale = {
            "task_id": task.id,
            "token": lease["token"] + 1,
            "outcome": "succeeded",
            "result": "forged",
        }
        answer = http.post(f"/workers/{worker['id']}/report", json={"reports": [stale]})
        assert answer.status_code == 409
        after = client.get(task.id)
        assert (after.state, after.result, after.attempts) == (TaskState.RUNNING, None, 1)
        good = {**stale, "token": lease["token"], "result": "real"}
        assert (
            http.post(f"/workers/{worker['id']}/report", json={"reports": [good]}).status_code
            == 200
        )
        again = http.post(
            f"/workers/{worker['id']}/report", json={"reports": [good | {"result": "twice"}]}
        )
        assert again.status_code == 409
        assert client.result(task.id).result == "real", "a terminal result is written once"


def test_cycle_and_malformed_bodies_get_422_not_500(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url + API) as http:
        cycle = http.post("/tasks/batch", json={"tasks": [
            {"handler": "echo", "name": "a", "depends_on": ["b"]},
            {"handler": "echo", "name": "b", "depends_on": ["a"]},
        ]})  # fmt: skip
        assert cycle.status_code == 422 and "cycle" in cycle.text
        malformed = http.post(
            "/tasks", content=b'{"handler": "echo",', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422
        wrong_type = http.post("/tasks", json={"handler": "echo", "priority": "high"})
        assert wrong_type.status_code == 422
        assert wrong_type.json()["detail"][0]["loc"][-1] == "priority"
        assert http.get("/tasks", params={"limit": "many"}).status_code == 422
        assert http.get("/tasks/does-not-exist").status_code == 404
        assert sum(http.get("/status").json()["counts"].values()) == 0, (
            "nothing invalid may be stored"
        )
