"""A worker that dies in the middle of a lease long-poll leases nothing afterwards: its poll ends
with its connection, so a task submitted later goes to a live worker, not to the dead one."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conveyor.api.schemas import RegisterIn
from conveyor.client import Client
from conveyor.client.worker_api import WorkerConnection
from conveyor.core.states import TaskState
from conveyor.testing import Cluster, wait_until

pytestmark = pytest.mark.slow


def test_a_long_poll_whose_client_is_gone_leases_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_server()
        with WorkerConnection(cluster.url) as conn, Client(cluster.url) as client:
            worker_id = conn.register(
                RegisterIn(name="doomed", host="localhost", pid=os.getpid(), concurrency=1)
            ).id
            parts = urlsplit(cluster.url)
            body = json.dumps({"max": 5, "wait_s": 30}).encode()
            poll = socket.create_connection((parts.hostname, parts.port))
            poll.sendall(
                f"POST /api/v1/workers/{worker_id}/lease HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            poll.close()  # as a SIGKILL would: the poll's connection is gone
            task = client.submit("echo", 1)
            # Ask as a live worker would; the dead poll must not have taken the task first.
            wait_until(lambda: client.get(task.id).state is TaskState.QUEUED, 5, "queued")
            (leased,) = conn.lease(worker_id, 1, wait_s=5).tasks
            assert leased.task_id == task.id
            assert client.get(task.id).attempts == 1
    finally:
        cluster.stop()
