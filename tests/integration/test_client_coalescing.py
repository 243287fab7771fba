"""AsyncClient sends concurrent submit calls together: fewer requests, the same answers per call.

Against the real app (in-process, on SQLite); a counting transport sees the requests it sends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.api.schemas import API_PREFIX
from conveyor.client import AsyncClient
from conveyor.engine import Engine
from conveyor.errors import InvalidSpecError, NotFoundError
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio


class Counting(httpx.AsyncBaseTransport):
    """The app's transport, counting requests by path."""

    def __init__(self, served: Served) -> None:
        self._inner = httpx.ASGITransport(app=served.app)
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path.removeprefix(API_PREFIX)] += 1
        return await self._inner.handle_async_request(request)


@pytest.fixture
async def app(server_engine: Engine, anyio_backend: str) -> AsyncIterator[Served]:
    async with serve(server_engine) as served:
        yield served


async def test_concurrent_submits_share_requests_and_each_gets_its_own_task(app: Served) -> None:
    transport = Counting(app)
    async with AsyncClient(
        "http://conveyor.test", transport=transport, coalesce_submits=True
    ) as client:
        tasks = await asyncio.gather(*(client.submit("echo", i) for i in range(300)))
    assert [t.args for t in tasks] == [[i] for i in range(300)]
    assert len({t.id for t in tasks}) == 300
    assert transport.paths["/tasks/batch"] >= 1
    assert sum(transport.paths.values()) < 30, transport.paths
    page = await app.get("/tasks", params={"limit": 300})
    listed = [t["args"][0] for t in page.json()["tasks"]]
    assert sorted(listed) == list(range(300))


async def test_a_lone_submit_goes_alone(app: Served) -> None:
    transport = Counting(app)
    async with AsyncClient(
        "http://conveyor.test", transport=transport, coalesce_submits=True
    ) as client:
        task = await client.submit("echo", 1)
        again = await client.submit("echo", 2)
    assert (task.args, again.args) == ([1], [2])
    assert transport.paths == Counter({"/tasks": 2})


async def test_a_refused_spec_fails_its_own_call_only(app: Served) -> None:
    transport = Counting(app)
    async with AsyncClient(
        "http://conveyor.test", transport=transport, coalesce_submits=True
    ) as client:
        outcomes = await asyncio.gather(
            *(client.submit("echo", i) for i in range(5)),
            client.submit("echo", 99, depends_on=["no-such-task"]),
            *(client.submit("echo", i) for i in range(5, 10)),
            return_exceptions=True,
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], NotFoundError | InvalidSpecError), outcomes
    assert outcomes[5] is errors[0]
    good = [o for o in outcomes if not isinstance(o, BaseException)]
    assert sorted(t.args[0] for t in good) == list(range(10))
    assert transport.paths["/tasks/batch"] >= 1, "they went together first"


async def test_the_same_key_in_concurrent_calls_returns_one_task(app: Served) -> None:
    async with AsyncClient(
        "http://conveyor.test", transport=Counting(app), coalesce_submits=True
    ) as client:
        first, second, other = await asyncio.gather(
            client.submit("echo", 1, key="k"),
            client.submit("echo", 1, key="k"),
            client.submit("echo", 2),
        )
    assert first.id == second.id != other.id


async def test_named_specs_keep_their_meaning_and_go_alone(app: Served) -> None:
    transport = Counting(app)
    async with AsyncClient(
        "http://conveyor.test", transport=transport, coalesce_submits=True
    ) as client:
        stored = await client.submit("echo", 0, name="upstream")
        # Another call of the same moment with the same name must not become a batch sibling
        # that this task's dependency would point at instead.
        named, dependent = await asyncio.gather(
            client.submit("echo", 1, name="upstream"),
            client.submit("echo", 2, depends_on=[stored.id]),
        )
    assert dependent.depends_on == [stored.id]
    assert named.id != stored.id
    assert transport.paths["/tasks"] >= 2


async def test_coalescing_can_be_turned_off(app: Served) -> None:
    transport = Counting(app)
    async with AsyncClient(
        "http://conveyor.test", transport=transport, coalesce_submits=False
    ) as client:
        await asyncio.gather(*(client.submit("echo", i) for i in range(20)))
    assert transport.paths == Counter({"/tasks": 20})
