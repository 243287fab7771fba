"""What the OpenAPI schema allows is what the server accepts, and what it refuses is refused.

The mismatches schemathesis found, each pinned: integers given as 2.0, date-times given as
numbers, the handler and cron grammars and timezones only checked in code, bounds that reached
the schema as `ge`/`le` (which JSON Schema does not know), run_at together with delay_s, keys of
resource maps, 413 undeclared, long-polls over the response-time limit, deregistered workers.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.api.schedules import ScheduleIn
from conveyor.core import schedules
from conveyor.core.schedules import (
    CRON_PATTERN,
    MAX_CRON_LENGTH,
    MAX_TIMEZONE_LENGTH,
    ScheduleSpec,
    known_timezones,
    next_after,
)
from conveyor.core.spec import HANDLER_PATTERN, MAX_HANDLER_LENGTH, TaskSpec
from conveyor.engine import Engine
from conveyor.server import ServerSettings
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def walk(schema: Any) -> list[dict[str, Any]]:
    """Every sub-schema (dict) of a JSON document."""
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


async def test_no_bound_reaches_the_schema_under_a_name_json_schema_does_not_know(
    served: Served,
) -> None:
    schema = (await served.http.get("/openapi.json")).json()
    for node in walk(schema["components"]["schemas"]):
        if "type" in node or "anyOf" in node:
            assert not {"ge", "le", "gt", "lt"} & node.keys(), node
    spec = schema["components"]["schemas"]["TaskSpec"]["properties"]
    assert spec["priority"] == {
        "type": "integer", "minimum": -1_000_000, "maximum": 1_000_000,
        "title": "Priority", "default": 0,
    }  # fmt: skip
    delay = spec["delay_s"]["anyOf"][0]
    assert delay == {"type": "number", "minimum": 0, "maximum": 366 * 86_400}


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"max": 2.0}, True),  # JSON Schema: an integer
        ({"max": 2}, True),
        ({"max": 2.5}, False),
        ({"max": True}, False),
        ({"max": "2"}, False),
        ({"max": 1e300}, False),  # integral, but over the maximum
        ({"wait_s": 0}, True),
        ({"wait_s": False}, False),
        ({"wait_s": "0"}, False),
        ({"free": {"cpu": 1}}, True),
        ({"free": {"not a name": 1}}, False),
    ],
)
async def test_integers_may_be_written_2_0_but_never_as_booleans_or_text(
    served: Served, body: dict[str, Any], accepted: bool
) -> None:
    worker = await served.register(pid=7.0, concurrency=2.0)
    response = await served.post(f"/workers/{worker}/lease", json=body)
    assert (response.status_code == 200) is accepted, response.text


@pytest.mark.parametrize("path", ["/monitor", "/status/history"])
async def test_since_is_a_date_time_never_a_number(served: Served, path: str) -> None:
    assert (await served.get(path, params={"since": "0.5"})).status_code == 422
    assert (await served.get(path, params={"since": "1700000000"})).status_code == 422
    assert (await served.get(path, params={"since": "2030-01-01"})).status_code == 422
    ok = await served.get(path, params={"since": "2030-01-01T00:00:00Z"})
    assert ok.status_code == 200, ok.text


def test_run_at_is_a_date_time_and_not_given_with_delay_s() -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        TaskSpec.model_validate_json('{"handler": "sha256", "run_at": 1700000000}')
    spec = TaskSpec.model_validate_json('{"handler": "sha256", "run_at": "2030-01-01T09:00"}')
    assert spec.run_at == datetime(2030, 1, 1, 9, tzinfo=UTC)  # no zone: UTC, as documented
    assert TaskSpec(handler="sha256", run_at=datetime(2030, 1, 1)).run_at is not None  # Python
    with pytest.raises(ValidationError, match="not both"):
        TaskSpec(handler="sha256", run_at="2030-01-01T00:00:00Z", delay_s=1)  # type: ignore[arg-type]
    assert TaskSpec.model_json_schema()["not"] == {
        "required": ["run_at", "delay_s"],
        "properties": {"run_at": {"type": "string"}, "delay_s": {"type": "number"}},
    }


@FUZZ
@given(
    st.from_regex(HANDLER_PATTERN.replace("$", r"\Z"), fullmatch=True).filter(
        lambda handler: len(handler) <= MAX_HANDLER_LENGTH  # the schema's maxLength
    )
)
def test_every_handler_the_schema_allows_is_accepted(handler: str) -> None:
    assert TaskSpec(handler=handler).handler == handler


def test_the_cron_length_bound_is_in_the_schema() -> None:
    schema = ScheduleSpec.model_json_schema()["properties"]["cron"]
    assert schema["maxLength"] == MAX_CRON_LENGTH


def test_the_handler_length_bound_is_in_the_schema() -> None:
    schema = TaskSpec.model_json_schema()["properties"]["handler"]
    assert schema["maxLength"] == MAX_HANDLER_LENGTH
    with pytest.raises(ValidationError, match="at most 200 characters"):
        TaskSpec(handler="pkg.mod:" + "f" * 200)


def test_the_handler_pattern_is_in_the_schema_and_refuses_what_the_server_refuses() -> None:
    schema = TaskSpec.model_json_schema()["properties"]["handler"]
    assert schema["pattern"] == HANDLER_PATTERN
    for bad in ["", "1abc", "pkg.mod:", "a b", "sha256\n", ":f", "pkg..mod:f"]:
        assert not re.search(HANDLER_PATTERN, bad) or bad.endswith("\n")
        with pytest.raises(ValidationError):
            TaskSpec(handler=bad)


@FUZZ
@given(
    st.from_regex(CRON_PATTERN.replace("$", r"\Z"), fullmatch=True).filter(
        lambda cron: len(cron) <= MAX_CRON_LENGTH  # the schema's maxLength
    )
)
def test_every_cron_expression_the_schema_allows_is_accepted_and_fires(cron: str) -> None:
    spec = ScheduleSpec(name="s", cron=cron, task=TaskSpec(handler="sha256"))
    assert croniter.is_valid(spec.cron)
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_after(spec.cron, "UTC", after) > after


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 0 31 2 *", "never fires"),
        ("0 0 30,31 feb *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30-31/1 2 *", "never fires"),
        ("0 0 31 2,jun,9 mon,*", "never fires"),  # with `*` among them, croniter ignores weekdays
        ("0 0 * jan-dec/3 *", "not a cron expression"),  # months: no A-B/STEP (use */3)
        ("0 0 5-5 * *", "not a cron expression"),  # croniter would read 5-5 as *
        ("60 * * * *", "not a cron expression"),
        ("* * * *", "not a cron expression"),
        ("0 0 L * *", "not a cron expression"),
        ("@daily", "not a cron expression"),
        (" * * * * *", "not a cron expression"),
    ],
)
def test_cron_expressions_outside_the_grammar_or_that_never_fire_are_refused(
    cron: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ScheduleSpec(name="s", cron=cron, task=TaskSpec(handler="sha256"))
    assert not re.fullmatch(CRON_PATTERN, cron)


@pytest.mark.parametrize(
    "cron",
    [
        "*/5 * * * *",
        "0 0 31 2 1",
        "0 0 31 2 */1",
        "0 0 31 1-2 *",
        "0 0 30-31 2,apr *",
        "0 0 29 2 *",
        "05 9-17/2 * JAN-mar mon-FRI 30",
    ],
)
def test_cron_expressions_that_fire_are_accepted(cron: str) -> None:
    assert re.fullmatch(CRON_PATTERN, cron)
    ScheduleSpec(name="s", cron=cron, task=TaskSpec(handler="sha256"))


def test_the_timezone_is_any_zone_name_in_the_schema_and_a_known_one_in_validation() -> None:
    """Which zones exist is up to the host's timezone database: the schema, the same on every
    host, gives their shape and says so; validation checks the name against the database."""
    schema = ScheduleSpec.model_json_schema()["properties"]["timezone"]
    assert "enum" not in schema and schema["type"] == "string"
    assert schema["maxLength"] == MAX_TIMEZONE_LENGTH
    assert all(re.fullmatch(schema["pattern"], zone) for zone in known_timezones())
    assert "known to the server" in schema["description"]
    with pytest.raises(ValidationError, match="unknown timezone"):
        ScheduleSpec(name="s", cron="* * * * *", timezone="Mars/Olympus", task={"handler": "x"})  # type: ignore[arg-type]


def test_the_schema_is_the_same_whatever_zones_the_host_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = json.dumps(ScheduleIn.model_json_schema())
    monkeypatch.setattr(schedules, "known_timezones", lambda: frozenset({"UTC", "Asia/Tokyo"}))
    assert json.dumps(ScheduleIn.model_json_schema()) == here


async def test_a_scheduled_task_has_no_run_at_nor_key_in_the_schema_too(served: Served) -> None:
    schema = (await served.http.get("/openapi.json")).json()["components"]["schemas"]
    task = schema["ScheduleIn"]["properties"]["task"]
    assert task["$ref"] == "#/components/schemas/ScheduledTaskSpec"
    scheduled, spec = schema["ScheduledTaskSpec"], schema["TaskSpec"]
    for field in ("run_at", "key"):  # null, as schedules answer them
        assert scheduled["properties"][field]["type"] == "null"
    # Every other field as a task spec has it: one is built from the other.
    same = scheduled["properties"].keys() - {"run_at", "key"}
    assert same == spec["properties"].keys() - {"run_at", "key"}
    assert {f: scheduled["properties"][f] for f in same} == {f: spec["properties"][f] for f in same}
    assert scheduled["required"] == spec["required"]
    assert scheduled["additionalProperties"] is spec["additionalProperties"] is False
    for body, status in [
        ({"handler": "sha256", "key": "k"}, 422),
        ({"handler": "sha256", "run_at": "2030-01-01T00:00:00Z"}, 422),
        ({"handler": "sha256", "key": None, "run_at": None}, 201),
    ]:
        body = {"name": "n", "cron": "* * * * *", "task": body, "replace": True}
        assert (await served.post("/schedules", json=body)).status_code == status, body
    body = {"name": "n", "cron": "* * * * *", "task": {"handler": "sha256"}, "replace": 1}
    assert (await served.post("/schedules", json=body)).status_code == 422  # a boolean only


async def test_every_operation_with_a_body_declares_413(served: Served) -> None:
    schema = (await served.http.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "413" in operation["responses"], (method, path)
    too_big = {"tasks": [{"handler": "sha256", "args": ["x" * 200_000]}] * 6}
    assert (await served.post("/tasks/batch", json=too_big)).status_code == 413


async def test_an_empty_wait_is_not_a_number(served: Served) -> None:
    task = await served.submit()
    for query in ("wait=", "wait=abc", "wait=-1", "wait=nan"):
        answer = await served.http.get(f"/api/v1/tasks/{task['id']}/result?{query}")
        assert answer.status_code == 422, (query, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["query", "wait"]
    assert (await served.get(f"/tasks/{task['id']}/result?wait=0")).status_code == 200


async def test_long_polls_are_capped_by_the_server(server_engine: Engine) -> None:
    async with serve(server_engine, ServerSettings(timer_interval_s=0.05, max_wait_s=0.2)) as s:
        worker = await s.register()
        started = time.monotonic()
        assert await s.lease(worker, wait_s=30) == []
        task = await s.submit(queue="elsewhere")
        answer = await s.get(f"/tasks/{task['id']}/result", params={"wait": 30})
        assert answer.json()["done"] is False
        assert time.monotonic() - started < 5


async def test_the_tasks_links_lead_to_the_operations_on_the_task(served: Served) -> None:
    schema = (await served.http.get("/openapi.json")).json()
    links = schema["paths"]["/api/v1/tasks"]["post"]["responses"]["201"]["links"]
    assert links["CancelTask"] == {
        "operationRef": "#/paths/~1api~1v1~1tasks~1{task_id}~1cancel/post",
        "parameters": {"task_id": "$response.body#/id"},
    }
    for link in links.values():
        path, method = link["operationRef"][len("#/paths/") :].rsplit("/", 1)
        assert method in schema["paths"][path.replace("~1", "/")], link
    assert (
        json.dumps(schema).count("$response.body#/spec/name") == 4
    )  # get, remove, pause, resume a schedule
