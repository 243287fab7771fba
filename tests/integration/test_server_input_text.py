"""Text and numbers at the door: NUL, lone surrogates, NaN and Infinity, over-long identifiers.

Each case runs through both ways into the server (REST, and the persistent connection: a
WebSocket whose frames carry the same bodies) and on both stores, and must get the same answer
everywhere: a client's bad input is 422 naming the field; a worker's report is cleaned (U+FFFD)
and recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from conveyor.api import frames
from conveyor.api.schemas import API_PREFIX
from conveyor.engine import Engine
from conveyor.server import create_app, request_shutdown
from conveyor.server.serving import uvicorn_config
from conveyor.store import open_store
from tests.helpers.postgres import postgres_url  # noqa: F401  (the fixture)
from tests.integration.conftest import SERVER_SETTINGS

pytestmark = pytest.mark.anyio

LANES = ["rest"]


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = str(tmp_path / "text.db")
    store = open_store(url)
    try:
        yield Engine(store)
    finally:
        store.close()


@asynccontextmanager
async def client(engine: Engine, lane: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the whole app."""
    app = create_app(engine, SERVER_SETTINGS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.test") as http:
            yield http


def raw(text: str) -> bytes:
    """A JSON body written by hand, so that `\\ud800`, `NaN` and `Infinity` reach the server as
    a client would write them (httpx's encoder would refuse or change them)."""
    return text.encode()


def field_of(response: httpx.Response) -> list[Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return list(detail[0]["loc"])


BAD_SPECS = [
    # (body, the field the 422 must name)
    (r'{"handler": "fail", "args": ["bad\u0000msg"]}', ["body", "args"]),
    (r'{"handler": "echo", "args": [{"deep": ["x", "bad\u0000"]}]}', ["body", "args"]),
    (r'{"handler": "echo", "kwargs": {"k\u0000": 1}}', ["body", "kwargs"]),
    (r'{"handler": "echo", "kwargs": {"text": "\ud800"}}', ["body", "kwargs"]),
    (r'{"handler": "echo", "args": ["lone \udfff low"]}', ["body", "args"]),
    (r'{"handler": "echo", "key": "a\u0000b"}', ["body", "key"]),
    (r'{"handler": "echo", "key": "\ud800"}', ["body", "key"]),
    (r'{"handler": "echo", "labels": {"team": "x\u0000"}}', ["body", "labels"]),
    (r'{"handler": "echo", "labels": {"te\u0000am": "x"}}', ["body", "labels"]),
    (r'{"handler": "echo", "depends_on": ["x\u0000"]}', ["body", "depends_on"]),
    ('{"handler": "echo", "args": [NaN]}', ["body", "args"]),
    ('{"handler": "echo", "args": [1, [Infinity]]}', ["body", "args"]),
    ('{"handler": "echo", "kwargs": {"x": -Infinity}}', ["body", "kwargs"]),
    ('{"handler": "echo", "args": [1e999]}', ["body", "args"]),
    # unbounded identifiers
    ('{"handler": "m:' + "f" * 300 + '"}', ["body", "handler"]),
    ('{"handler": "echo", "labels": {"' + "k" * 201 + '": "v"}}', ["body", "labels"]),
    ('{"handler": "echo", "depends_on": ["' + "d" * 201 + '"]}', ["body", "depends_on"]),
    (
        '{"handler": "echo", "labels": {' + ", ".join(f'"l{i}": "v"' for i in range(101)) + "}}",
        ["body", "labels"],
    ),
]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize(("body", "field"), BAD_SPECS)
async def test_a_spec_with_bad_text_or_numbers_is_refused_naming_the_field(
    engine: Engine, lane: str, body: str, field: list[Any]
) -> None:
    async with client(engine, lane) as http:
        headers = {"content-type": "application/json"}
        one = await http.post(f"{API_PREFIX}/tasks", content=raw(body), headers=headers)
        assert field_of(one)[: len(field)] == field
        batch = raw('{"tasks": [{"handler": "echo"}, ' + body + "]}")
        many = await http.post(f"{API_PREFIX}/tasks/batch", content=batch, headers=headers)
        assert field_of(many)[:4] == ["body", "tasks", 1, field[1]]
        listed = await http.get(f"{API_PREFIX}/tasks")
        assert listed.json()["tasks"] == [], "nothing was stored"


@pytest.mark.parametrize("lane", LANES)
async def test_good_text_of_every_kind_is_accepted_and_read_back(engine: Engine, lane: str) -> None:
    text = "é ✓ 😀 \u2028 \ufffd tab\t new\nline"
    spec = {
        "handler": "echo",
        "args": [text, 1.5, -(2**53), {"k é": [text]}],
        "kwargs": {"😀": text},
        "key": f"key {text}"[:200],
        "labels": {"é": text},
    }
    async with client(engine, lane) as http:
        response = await http.post(f"{API_PREFIX}/tasks", json=spec)
        assert response.status_code == 201, response.text
        read = (await http.get(f"{API_PREFIX}/tasks/{response.json()['id']}")).json()
        assert (read["args"], read["kwargs"], read["key"], read["labels"]) == (
            spec["args"], spec["kwargs"], spec["key"], spec["labels"],
        )  # fmt: skip


BAD_REGISTRATIONS = [
    (r'{"name": "w\u0000", "host": "h", "pid": 1, "concurrency": 1}', ["body", "name"]),
    (r'{"name": "w", "host": "\ud800", "pid": 1, "concurrency": 1}', ["body", "host"]),
]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize(("body", "field"), BAD_REGISTRATIONS)
async def test_a_registration_with_bad_text_is_refused_naming_the_field(
    engine: Engine, lane: str, body: str, field: list[Any]
) -> None:
    async with client(engine, lane) as http:
        response = await http.post(
            f"{API_PREFIX}/workers", content=raw(body), headers={"content-type": "application/json"}
        )
        assert field_of(response) == field


@pytest.mark.parametrize("lane", LANES)
async def test_a_schedule_whose_task_holds_bad_text_is_refused(engine: Engine, lane: str) -> None:
    body = r'{"name": "s", "cron": "* * * * *", "task": {"handler": "echo", "args": ["\u0000"]}}'
    async with client(engine, lane) as http:
        response = await http.post(
            f"{API_PREFIX}/schedules",
            content=raw(body),
            headers={"content-type": "application/json"},
        )
        assert field_of(response)[:3] == ["body", "task", "args"]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/tasks/ab%00cd", ["path", "task_id"]),
        ("/tasks/ab%00cd/result", ["path", "task_id"]),
        ("/workers/w%00", ["path", "worker_id"]),
        ("/tasks?name=a%00", ["query", "name"]),
        ("/tasks?label=team:x%00", ["query", "label"]),
    ],
)
async def test_a_nul_in_the_path_or_query_is_refused_naming_it(
    engine: Engine, lane: str, url: str, field: list[Any]
) -> None:
    async with client(engine, lane) as http:
        assert field_of(await http.get(API_PREFIX + url))[: len(field)] == field


@pytest.mark.parametrize("lane", LANES)
async def test_a_report_with_bad_text_is_recorded_with_it_replaced(
    engine: Engine, lane: str
) -> None:
    async with client(engine, lane) as http:
        submitted = await http.post(f"{API_PREFIX}/tasks", json={"handler": "fail"})
        registered = await http.post(
            f"{API_PREFIX}/workers", json={"name": "w", "host": "h", "pid": 1, "concurrency": 1}
        )
        worker = registered.json()["id"]
        leased = await http.post(f"{API_PREFIX}/workers/{worker}/lease", json={"max": 1})
        [lease] = leased.json()["tasks"]
        # As a worker would write it: the raised message holds a NUL and a lone surrogate.
        held = f'"task_id": "{lease["task_id"]}", "token": {lease["token"]}'
        report = (
            '{"reports": [{' + held + ', "outcome": "failed", '
            r'"error": "bad\u0000msg \ud800", "traceback": "T\u0000", '
            r'"stdout_tail": "out\u0000", "stderr_tail": "err\udc00"}]}'
        )
        answer = await http.post(
            f"{API_PREFIX}/workers/{worker}/report",
            content=raw(report),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["acks"][0]["accepted"] is True
        task = (await http.get(f"{API_PREFIX}/tasks/{submitted.json()['id']}")).json()
        assert task["state"] == "failed"
        assert task["error"] == "bad\ufffdmsg \ufffd"
        [attempt] = task["attempt_log"]
        assert (attempt["traceback"], attempt["stdout_tail"], attempt["stderr_tail"]) == (
            "T\ufffd", "out\ufffd", "err\ufffd",
        )  # fmt: skip


@pytest.mark.parametrize("lane", LANES)
async def test_heartbeat_metrics_with_bad_text_are_cleaned(engine: Engine, lane: str) -> None:
    async with client(engine, lane) as http:
        registered = await http.post(
            f"{API_PREFIX}/workers", json={"name": "w", "host": "h", "pid": 1, "concurrency": 1}
        )
        worker = registered.json()["id"]
        beat = r'{"running": [], "metrics": {"gpu\u0000": "name\ud800", "load": NaN}}'
        answer = await http.post(
            f"{API_PREFIX}/workers/{worker}/heartbeat",
            content=raw(beat),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        shown = (await http.get(f"{API_PREFIX}/workers/{worker}")).json()
        assert shown["metrics"] == {"gpu\ufffd": "name\ufffd", "load": None}


@pytest.mark.parametrize(
    ("field", "value"),
    [("cron", "1," * 5_000 + "1 * * * *"), ("timezone", "Europe/" + "x" * 10_000)],
)
async def test_an_overlong_schedule_field_is_refused_at_once_without_echo(
    engine: Engine, field: str, value: str
) -> None:
    # A cron expression of 200 KB took seconds of the event loop's time to match.
    schedule = {"name": "s", "cron": "* * * * *", "task": {"handler": "echo"}, field: value}
    async with client(engine, "rest") as http:
        response = await http.post(f"{API_PREFIX}/schedules", json=schedule)
        assert field_of(response) == ["body", field]
        assert len(response.content) < 2_000, "the value is not echoed back"


# ---- the persistent connection ------------------------------------------------------------------


@contextmanager
def served_on_a_port(engine: Engine) -> Iterator[int]:
    """The app under uvicorn in a thread, as `conveyor server` runs it; yields its port."""
    app = create_app(engine, SERVER_SETTINGS)
    config = uvicorn_config(
        app, host="127.0.0.1", port=0, log_level="warning", heartbeat_interval_s=5.0,
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    give_up_at = time.monotonic() + 15
    while not server.started:  # uvicorn offers no event to wait on
        assert thread.is_alive() and time.monotonic() < give_up_at, "did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        request_shutdown(app)
        server.should_exit = True
        thread.join(15)


async def test_the_stream_refuses_what_rest_refuses_naming_the_same_field(engine: Engine) -> None:
    cases = [("submit", body, field) for body, field in BAD_SPECS]
    cases += [("register_worker", body, field) for body, field in BAD_REGISTRATIONS]
    with served_on_a_port(engine) as port:
        url = f"ws://127.0.0.1:{port}{frames.STREAM_PATH}"
        async with websockets.connect(url, subprotocols=[frames.SUBPROTOCOL]) as stream:
            for number, (op, body, field) in enumerate(cases):
                await stream.send(frames.encode({"id": number, "op": op}, raw(body)))
                header, answer = frames.decode(await stream.recv())
                assert (header["id"], header["status"]) == (number, 422), (op, body, answer)
                loc = json.loads(answer)["detail"][0]["loc"]
                assert loc[: len(field)] == field, (op, body, answer)
    assert engine.list_tasks(limit=10) == [], "nothing was stored"
