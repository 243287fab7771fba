"""A following lease: on the persistent connection one lease call goes on answering, one answer
per task as it gets ready, until it has brought `max` tasks or a wait passed with none; over REST
it answers once. What it pushes counts against the resources the worker said were free, and it
ends with the worker's connection, as every long poll does."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.api.schemas import LeaseOut, RegisterIn
from conveyor.client import Client
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.states import TaskState
from conveyor.errors import ConflictError, NotFoundError, ServerUnavailableError
from conveyor.testing import wait_until
from tests.helpers.live_server import LiveServer

Answers = queue.SimpleQueue[LeaseOut | ServerUnavailableError | None]
"""What a following call answered, in order, or the error it ended with; None once it ended."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "follow.db").start()
    yield live
    live.stop()


def _register(conn: WorkerConnection, **resources: float) -> str:
    registration = RegisterIn(
        name="follower", host="localhost", pid=os.getpid(), concurrency=1, resources=resources
    )
    return conn.register(registration).id


def _follow(
    conn: WorkerConnection, worker_id: str, max_tasks: int, wait_s: float, **free: float
) -> tuple[threading.Thread, Answers]:
    """Run a following lease in a thread of its own; its answers come out of the queue."""
    answers: Answers = queue.SimpleQueue()

    def follow() -> None:
        try:
            for answer in conn.leases(worker_id, max_tasks, wait_s=wait_s, free=free or None):
                answers.put(answer)
        except ServerUnavailableError as exc:
            answers.put(exc)
        finally:
            answers.put(None)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread, answers


def test_one_call_brings_each_task_as_it_gets_ready_until_it_has_brought_max(
    server: LiveServer,
) -> None:
    with WorkerConnection(server.url, connection="stream") as conn, Client(server.url) as client:
        worker_id = _register(conn)
        thread, answers = _follow(conn, worker_id, max_tasks=3, wait_s=20)
        leased = []
        for i in range(3):
            task = client.submit("echo", i)
            # Calls of the worker's other threads share the connection meanwhile: whichever
            # thread reads hands each answer to the call it belongs to.
            conn.heartbeat(worker_id, [(t.task_id, t.token) for t in leased])
            answer = answers.get(timeout=10)
            assert isinstance(answer, LeaseOut), "the call ended before it had brought max tasks"
            assert [t.task_id for t in answer.tasks] == [task.id]
            leased.extend(answer.tasks)
        assert answers.get(timeout=10) is None, "the call ends once it has brought max tasks"
        thread.join(10)
        fourth = client.submit("echo", 3)
        assert client.get(fourth.id).state is TaskState.QUEUED
        assert {client.get(t.task_id).state for t in leased} == {TaskState.RUNNING}


def test_after_a_wait_with_no_task_the_call_ends_with_an_empty_answer(server: LiveServer) -> None:
    with WorkerConnection(server.url, connection="stream") as conn, Client(server.url) as client:
        worker_id = _register(conn)
        thread, answers = _follow(conn, worker_id, max_tasks=5, wait_s=0.5)
        task = client.submit("echo", 1)
        first = answers.get(timeout=10)
        assert isinstance(first, LeaseOut) and [t.task_id for t in first.tasks] == [task.id]
        last = answers.get(timeout=10)
        assert isinstance(last, LeaseOut) and last.tasks == []
        assert answers.get(timeout=10) is None
        thread.join(10)


def test_over_rest_a_following_lease_answers_once(server: LiveServer) -> None:
    with WorkerConnection(server.url, connection="rest") as conn, Client(server.url) as client:
        worker_id = _register(conn)
        tasks = [client.submit("echo", i) for i in range(2)]
        answers = list(conn.leases(worker_id, 5, wait_s=5))
        assert [[t.task_id for t in answer.tasks] for answer in answers] == [
            [task.id for task in tasks]
        ]


def test_what_the_call_pushed_counts_against_the_resources_the_worker_had_free(
    server: LiveServer,
) -> None:
    with WorkerConnection(server.url, connection="stream") as conn, Client(server.url) as client:
        worker_id = _register(conn, gpu=1)
        thread, answers = _follow(conn, worker_id, max_tasks=5, wait_s=1, gpu=1)
        first = client.submit("echo", 1, resources={"gpu": 1})
        answer = answers.get(timeout=10)
        assert isinstance(answer, LeaseOut) and [t.task_id for t in answer.tasks] == [first.id]
        second = client.submit("echo", 2, resources={"gpu": 1})
        last = answers.get(timeout=10)
        assert isinstance(last, LeaseOut) and last.tasks == [], (
            "the one GPU is taken by the first task"
        )
        assert answers.get(timeout=10) is None
        thread.join(10)
        assert client.get(second.id).state is TaskState.QUEUED


def test_a_following_call_whose_connection_broke_leases_nothing_more(server: LiveServer) -> None:
    with Client(server.url) as client, WorkerConnection(server.url) as survivor:
        doomed = WorkerConnection(server.url, connection="stream")
        worker_id = _register(doomed)
        thread, answers = _follow(doomed, worker_id, max_tasks=5, wait_s=20)
        first = client.submit("echo", 1)
        answer = answers.get(timeout=10)
        assert isinstance(answer, LeaseOut) and [t.task_id for t in answer.tasks] == [first.id]
        doomed.close()  # as a SIGKILL would: the call's connection is gone
        assert isinstance(answers.get(timeout=10), ServerUnavailableError)
        thread.join(10)
        later = client.submit("echo", 2)
        # Ask as a live worker would; the broken call must not have taken the task first.
        other = _register(survivor)
        wait_until(lambda: client.get(later.id).state is TaskState.QUEUED, 5, "queued")
        (leased,) = survivor.lease(other, 1, wait_s=5).tasks
        assert leased.task_id == later.id
        assert client.get(later.id).attempts == 1


def test_a_call_asked_to_stop_grants_nothing_more_and_ends_at_once(server: LiveServer) -> None:
    with WorkerConnection(server.url, connection="stream") as conn, Client(server.url) as client:
        worker_id = _register(conn)
        answers = conn.leases(worker_id, 5, wait_s=30)
        first = client.submit("echo", 1)
        answer = next(answers)
        assert [t.task_id for t in answer.tasks] == [first.id]
        asked = time.monotonic()
        answers.stop()
        rest = list(answers)
        ended_after_s = time.monotonic() - asked
        assert [t for answer in rest for t in answer.tasks] == []
        assert ended_after_s < 10, f"the call ended only when its wait was over ({ended_after_s})"
        later = client.submit("echo", 2)
        assert client.get(later.id).state is TaskState.QUEUED


def test_a_worker_deregistered_while_its_call_follows_gets_the_error_as_its_last_answer(
    server: LiveServer,
) -> None:
    with WorkerConnection(server.url, connection="stream") as conn, Client(server.url) as client:
        worker_id = _register(conn)
        answers = conn.leases(worker_id, 5, wait_s=20)
        first = client.submit("echo", 1)
        answer = next(answers)
        assert [t.task_id for t in answer.tasks] == [first.id]
        client.deregister_worker(worker_id)
        later = client.submit("echo", 2)  # wakes the call, which may lease to nobody now
        with pytest.raises((NotFoundError, ConflictError)):
            next(answers)
        assert client.get(later.id).state is TaskState.QUEUED


def test_follow_must_be_a_boolean(server: LiveServer) -> None:
    with WorkerConnection(server.url, connection="rest") as conn:
        worker_id = _register(conn)
        answer = httpx.post(
            f"{server.url}/api/v1/workers/{worker_id}/lease", json={"follow": 0, "max": 1}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "follow"]
