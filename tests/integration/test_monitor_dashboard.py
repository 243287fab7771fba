"""The dashboard as the server serves it: the page and every asset from the package (nothing from
the internet), and the API views it reads: text search, dependency graphs and workflows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from anyio import to_thread

from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.server.dashboard import views
from conveyor.server.dashboard.page import ASSETS_DIR
from conveyor.store.base import TaskFilter
from tests.integration.conftest import Served

pytestmark = pytest.mark.anyio

IMPORT = re.compile(r"""(?:from|import)\s*["'](\.{1,2}/[^"']+)["']""")


# ---- page and assets ------------------------------------------------------------------------


async def test_the_page_and_every_module_it_imports_are_served_from_the_package(
    served: Served,
) -> None:
    page = await served.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert (
        "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    )
    assert "{{version}}" not in page.text
    # Follow every src/href of the page and every relative import of every module.
    todo = [u.split("?")[0] for u in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', page.text)]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        asset = await served.http.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == "no-cache"
        if url.endswith(".js"):
            assert asset.headers["content-type"].startswith("text/javascript"), url
            base = url.rsplit("/", 1)[0]
            for relative in IMPORT.findall(asset.text):
                todo.append(_join(base, relative))
    modules = {url for url in seen if url.endswith(".js")}
    on_disk = {
        "/dashboard/assets/" + p.relative_to(ASSETS_DIR).as_posix()
        for p in ASSETS_DIR.rglob("*.js")
    }
    assert modules == on_disk  # every module is reachable, and nothing is missing


def _join(base: str, relative: str) -> str:
    parts = base.split("/")
    for part in relative.split("/"):
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def test_no_asset_names_a_remote_host() -> None:
    for path in ASSETS_DIR.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            remote = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
            assert remote == [] or all("w3.org" in r for r in remote), (path, remote)


async def test_the_page_links_the_api_docs_and_status(served: Served) -> None:
    page = (await served.http.get("/")).text
    assert 'href="/docs"' in page and 'href="/api/v1/status"' in page
    assert (await served.http.get("/dashboard/assets/../app.py")).status_code == 404
    assert (await served.http.get("/dashboard/assets/nothing.js")).status_code == 404


# ---- search ---------------------------------------------------------------------------------


async def test_search_finds_names_by_any_case_part_and_ids_by_prefix(served: Served) -> None:
    nightly = await served.submit(name="Nightly-Report")
    await served.submit(name="hourly-report", queue="other")
    await served.submit(name="cleanup")
    found = await served.get("/search/tasks", params={"text": "REPORT"})
    assert found.status_code == 200
    body = found.json()
    assert [t["name"] for t in body["tasks"]] == ["hourly-report", "Nightly-Report"]
    assert body["next_cursor"] is None
    assert body["scanned"] == 3
    by_queue = await served.get("/search/tasks", params={"text": "report", "queue": "other"})
    assert [t["name"] for t in by_queue.json()["tasks"]] == ["hourly-report"]
    by_id = await served.get("/search/tasks", params={"text": nightly["id"][:20]})
    assert [t["id"] for t in by_id.json()["tasks"]] == [nightly["id"]]
    assert (await served.get("/search/tasks")).status_code == 422  # text is required


async def test_search_looks_at_a_bounded_number_of_tasks_and_the_cursor_continues(
    server_engine: Engine,
) -> None:
    for i in range(30):
        await to_thread.run_sync(lambda i=i: server_engine.submit(_spec(name=f"job-{i}")))
    first = views.search_tasks(
        server_engine, TaskFilter(), "job-1", after_seq=None, limit=100, max_scan=12
    )
    assert first.scanned == 12
    assert [t.name for t in first.tasks] == ["job-19", "job-18"]  # newest first, 29..18 scanned
    assert first.next_cursor is not None
    rest = views.search_tasks(
        server_engine, TaskFilter(), "job-1", after_seq=first.next_cursor, limit=100,
        max_scan=1000,
    )  # fmt: skip
    assert [t.name for t in rest.tasks] == ["job-17", "job-16", "job-15", "job-14", "job-13",
                                            "job-12", "job-11", "job-10", "job-1"]  # fmt: skip
    assert rest.next_cursor is None
    limited = views.search_tasks(
        server_engine, TaskFilter(), "job", after_seq=None, limit=2, max_scan=1000
    )
    assert [t.name for t in limited.tasks] == ["job-29", "job-28"]
    assert limited.scanned == 2 and limited.next_cursor == limited.tasks[-1].seq


# ---- graphs and workflows -------------------------------------------------------------------


async def batch(served: Served, *specs: dict[str, Any]) -> dict[str, str]:
    response = await served.post("/tasks/batch", json={"tasks": [{"handler": "sha256", **s} for s in specs]})  # fmt: skip
    assert response.status_code == 201, response.text
    return {t["name"]: t["id"] for t in response.json()["tasks"]}


async def test_task_graph_walks_up_and_down_to_the_depth_asked(served: Served) -> None:
    # a -> b -> c -> d, and x -> c
    ids = await batch(
        served,
        {"name": "a"},
        {"name": "x"},
        {"name": "b", "depends_on": ["a"]},
        {"name": "c", "depends_on": ["b", "x"]},
        {"name": "d", "depends_on": ["c"]},
    )
    name = {v: k for k, v in ids.items()}
    one = (await served.get(f"/tasks/{ids['c']}/graph", params={"depth": 1})).json()
    assert one["root"] == ids["c"]
    assert {name[n["id"]] for n in one["nodes"]} == {"b", "x", "c", "d"}
    assert {(name[a], name[b]) for a, b in one["edges"]} == {("b", "c"), ("x", "c"), ("c", "d")}
    assert one["truncated"] is True  # a lies beyond
    whole = (await served.get(f"/tasks/{ids['c']}/graph", params={"depth": 5})).json()
    assert {name[n["id"]] for n in whole["nodes"]} == set(ids)
    assert whole["truncated"] is False
    states = {name[n["id"]]: n["state"] for n in whole["nodes"]}
    assert states == {"a": "queued", "x": "queued", "b": "pending", "c": "pending", "d": "pending"}
    # Lineage is directed: from b, x is neither an ancestor nor a descendant.
    from_b = (await served.get(f"/tasks/{ids['b']}/graph", params={"depth": 5})).json()
    assert {name[n["id"]] for n in from_b["nodes"]} == {"a", "b", "c", "d"}
    missing = await served.get("/tasks/nope/graph")
    assert missing.status_code == 404


async def test_a_workflow_is_the_whole_component_and_is_cut_at_max_nodes(served: Served) -> None:
    ids = await batch(
        served,
        {"name": "a", "key": "nightly:a"},
        {"name": "x", "key": "nightly:x"},
        {"name": "b", "depends_on": ["a"], "key": "nightly:b"},
        {"name": "c", "depends_on": ["b", "x"], "key": "nightly:c"},
    )
    await served.submit(name="alone")
    flow = (await served.get(f"/workflows/{ids['x']}")).json()
    assert {n["id"] for n in flow["nodes"]} == set(ids.values())
    assert flow["name"] == "nightly"  # the job file's key prefix
    assert len(flow["edges"]) == 3 and flow["truncated"] is False
    cut = (await served.get(f"/workflows/{ids['x']}", params={"max_nodes": 2})).json()
    assert len(cut["nodes"]) == 2 and cut["truncated"] is True
    assert (await served.get("/workflows/nope")).status_code == 404


async def test_recent_workflows_are_named_and_counted(served: Served) -> None:
    first = await batch(
        served,
        {"name": "extract", "labels": {"workflow": "etl"}},
        {"name": "load", "depends_on": ["extract"], "labels": {"workflow": "etl"}},
    )
    await served.submit(name="alone")
    second = await batch(served, {"name": "fetch"}, {"name": "digest", "depends_on": ["fetch"]})
    await served.post(f"/tasks/{first['extract']}/cancel")  # fails `load` as well
    body = (await served.get("/workflows")).json()
    assert body["scanned"] == 5
    flows = {w["name"]: w for w in body["workflows"]}
    assert set(flows) == {"etl", "fetch"}  # a label, else the first task's name; no singletons
    assert flows["etl"]["id"] == first["extract"]  # the earliest task
    assert flows["etl"]["counts"] == {"cancelled": 1, "failed": 1}
    assert flows["fetch"]["counts"] == {"pending": 1, "queued": 1}
    assert flows["fetch"]["id"] == second["fetch"]
    assert all(w["tasks"] == 2 and w["complete"] for w in body["workflows"])
    # The most recently updated first: the cancel touched etl last.
    assert [w["name"] for w in body["workflows"]] == ["etl", "fetch"]
    # With a window that cuts a workflow, it is listed as incomplete.
    narrow = (await served.get("/workflows", params={"window": 1})).json()
    [only] = narrow["workflows"]
    assert only["name"] == "digest" and only["complete"] is False and only["tasks"] == 1


def test_workflow_names_prefer_a_label_then_a_key_prefix_then_the_first_name(
    server_engine: Engine,
) -> None:
    def tasks(*specs: dict[str, Any]) -> list[Any]:
        return server_engine.submit_batch([_spec(**s) for s in specs])

    assert views.workflow_name(tasks({"labels": {"workflow": "w"}, "key": "f:a"})) == "w"
    assert views.workflow_name(tasks({"key": "file:a"}, {"key": "file:b"})) == "file"
    assert views.workflow_name(tasks({"name": "first"}, {"name": "second"})) == "first"
    [unnamed] = tasks({})
    assert views.workflow_name([unnamed]) == f"sha256 {unnamed.id[:8]}"


def _spec(**fields: Any) -> TaskSpec:
    return TaskSpec(handler="sha256", **fields)
