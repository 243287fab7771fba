"""GET /metrics: Prometheus text that the official parser reads, with values that match the
engine after a known workload, in a registry of the app's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from anyio import to_thread
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from conveyor.engine import Engine
from conveyor.server import ServerSettings, create_app
from conveyor.server.app import context
from conveyor.server.metric_labels import MAX_LEARNED, OTHER, LabelValues
from tests.integration.conftest import Served, serve

pytestmark = pytest.mark.anyio

# queue a runs echo, queue b runs sha256: 5 succeeded, 2 failed, 1 cancelled in all.
WORKLOAD = [
    ("a", "echo", "succeeded"),
    ("a", "echo", "succeeded"),
    ("a", "echo", "succeeded"),
    ("a", "echo", "failed"),
    ("b", "sha256", "succeeded"),
    ("b", "sha256", "succeeded"),
    ("b", "sha256", "failed"),
    ("b", "sha256", "cancelled"),  # cancelled while queued: never started
]


async def scrape(served: Served) -> dict[str, list[Sample]]:
    response = await served.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def values(samples: list[Sample], name: str, **match: str) -> dict[tuple[str, ...], float]:
    """{label values in the order of `keys`: value} for samples called `name`."""
    found: dict[tuple[str, ...], float] = {}
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
            key = tuple(v for k, v in sorted(sample.labels.items()) if k not in match)
            found[key] = sample.value
    return found


async def run_workload(served: Served) -> None:
    worker = await served.register(queues=["a", "b"], concurrency=10)
    tasks = [
        await served.submit(handler=handler, queue=queue, args=[str(i)])
        for i, (queue, handler, _) in enumerate(WORKLOAD)
    ]
    cancel = [t for t, (_, _, end) in zip(tasks, WORKLOAD, strict=True) if end == "cancelled"]
    for task in cancel:
        assert (await served.post(f"/tasks/{task['id']}/cancel")).status_code == 200
    leased = await served.lease(worker, max=10)
    assert len(leased) == 7
    ends = {t["id"]: end for t, (_, _, end) in zip(tasks, WORKLOAD, strict=True)}
    reports = [
        {"task_id": a["task_id"], "token": a["token"], "outcome": ends[a["task_id"]], "result": 1}
        for a in leased
    ]
    response = await served.post(f"/workers/{worker}/report", json={"reports": reports})
    assert response.status_code == 200, response.text


async def test_metrics_match_the_engine_after_a_known_workload(served: Served) -> None:
    await run_workload(served)
    families = await scrape(served)

    submitted = values(families["conveyor_tasks_submitted"], "conveyor_tasks_submitted_total")
    assert submitted == {("echo", "a"): 4.0, ("sha256", "b"): 4.0}

    finished = values(families["conveyor_tasks_finished"], "conveyor_tasks_finished_total")
    assert finished == {
        ("echo", "a", "succeeded"): 3.0,
        ("echo", "a", "failed"): 1.0,
        ("sha256", "b", "succeeded"): 2.0,
        ("sha256", "b", "failed"): 1.0,
        ("sha256", "b", "cancelled"): 1.0,
    }

    # The database gauges equal the engine's counts, state by state and queue by queue.
    gauges = values(families["conveyor_tasks"], "conveyor_tasks")
    engine_counts = {(c.queue, c.state.value): float(c.count) for c in served.engine.counts()}
    assert {k: v for k, v in gauges.items() if v} == {k: v for k, v in engine_counts.items() if v}
    assert gauges[("a", "succeeded")] == 3.0
    assert gauges[("b", "cancelled")] == 1.0
    assert gauges[("a", "queued")] == 0.0  # every state of a known queue is listed

    # Each finished task's totals agree with the engine's, state by state.
    for state in ("succeeded", "failed", "cancelled"):
        total = sum(v for k, v in finished.items() if k[2] == state)
        assert total == sum(v for (_, s), v in engine_counts.items() if s == state)

    leases = values(families["conveyor_leases_granted"], "conveyor_leases_granted_total")
    assert leases == {("a",): 4.0, ("b",): 3.0}

    # Durations: the seven tasks that ran, by state; the queued-then-cancelled one never started.
    duration = families["conveyor_task_duration_seconds"]
    counts = values(duration, "conveyor_task_duration_seconds_count")
    assert counts == {
        ("echo", "a", "succeeded"): 3.0,
        ("echo", "a", "failed"): 1.0,
        ("sha256", "b", "succeeded"): 2.0,
        ("sha256", "b", "failed"): 1.0,
    }
    inf = values(duration, "conveyor_task_duration_seconds_bucket", le="+Inf")
    assert sum(inf.values()) == 7.0
    wait = values(families["conveyor_task_wait_seconds"], "conveyor_task_wait_seconds_count")
    assert wait == {("a",): 4.0, ("b",): 3.0}

    workers = values(families["conveyor_workers"], "conveyor_workers")
    assert workers[("alive",)] == 1.0
    assert workers[("dead",)] == 0.0

    calls = values(families["conveyor_engine_call_seconds"], "conveyor_engine_call_seconds_count")
    assert calls[("submit",)] == 8.0
    assert calls[("report",)] == 1.0
    assert calls[("lease",)] >= 1.0

    (info,) = families["conveyor_info"]
    assert info.labels["store"] == "sqlite"
    assert info.labels["version"]


async def test_a_retried_task_counts_each_end_and_the_gauges_show_where_it_is_now(
    served: Served,
) -> None:
    worker = await served.register()
    task = await served.submit(handler="fail")
    [lease] = await served.lease(worker)
    report = {"task_id": task["id"], "token": lease["token"], "outcome": "failed"}
    assert (await served.post(f"/workers/{worker}/report", json={"reports": [report]})).is_success
    assert (await served.post(f"/tasks/{task['id']}/retry")).status_code == 200
    families = await scrape(served)
    finished = values(families["conveyor_tasks_finished"], "conveyor_tasks_finished_total")
    assert finished == {("fail", "default", "failed"): 1.0}
    gauges = values(families["conveyor_tasks"], "conveyor_tasks")
    assert gauges[("default", "queued")] == 1.0
    assert gauges[("default", "failed")] == 0.0


async def test_each_app_has_its_own_registry_and_the_global_one_stays_clean(
    make_engine: Callable[..., Engine],
) -> None:
    async with serve(make_engine()) as first, serve(make_engine()) as second:
        await first.submit()
        await first.submit()
        await second.submit()
        one = values(
            (await scrape(first))["conveyor_tasks_submitted"], "conveyor_tasks_submitted_total"
        )
        two = values(
            (await scrape(second))["conveyor_tasks_submitted"], "conveyor_tasks_submitted_total"
        )
    assert one == {("sha256", "default"): 2.0}
    assert two == {("sha256", "default"): 1.0}
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("conveyor")]


async def test_metrics_is_not_shadowed_by_the_dashboard_and_stays_out_of_the_api_schema(
    served: Served,
) -> None:
    schema = (await served.http.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]
    response = await served.http.get("/metrics")
    assert "# TYPE conveyor_tasks gauge" in response.text


async def test_a_scrape_before_any_task_lists_no_task_series_and_no_error(
    make_engine: Callable[..., Engine],
) -> None:
    app = create_app(make_engine())  # no lifespan: no listeners, the gauges still read the store
    ctx = context(app)
    body = (await to_thread.run_sync(ctx.metrics.scrape, ctx.engine)).decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["conveyor_tasks"].samples == []
    assert families["conveyor_tasks_submitted"].samples == []


def labelled_series(
    families: dict[str, list[Sample]],
) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The series whose labels a client's names could choose: those with a queue or handler."""
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for samples in families.values()
        for sample in samples
        if "queue" in sample.labels or "handler" in sample.labels
    }


async def test_made_up_queues_and_handlers_add_a_bounded_number_of_series(
    served: Served,
) -> None:
    worker = await served.register(queues=["q0"])
    before = labelled_series(await scrape(served))
    batch = [{"handler": f"made.up{i}:run", "queue": f"q{i}"} for i in range(200)]
    response = await served.post("/tasks/batch", json={"tasks": batch})
    assert response.status_code in (200, 201), response.text
    [lease] = await served.lease(worker)  # q0 is served: its task is leased
    report = {"task_id": lease["task_id"], "token": lease["token"], "outcome": "succeeded"}
    assert (await served.post(f"/workers/{worker}/report", json={"reports": [report]})).is_success
    families = await scrape(served)
    added = labelled_series(families) - before
    assert len(added) <= 100, f"{len(added)} series for 200 made-up names"
    submitted = values(families["conveyor_tasks_submitted"], "conveyor_tasks_submitted_total")
    # A worker's queue is itself, made-up ones are `other`; handlers before any success too.
    assert submitted == {("other", "q0"): 1.0, ("other", "other"): 199.0}
    # A handler that succeeded exists in the workers' code: it is itself from then on.
    finished = values(families["conveyor_tasks_finished"], "conveyor_tasks_finished_total")
    assert finished == {("made.up0:run", "q0", "succeeded"): 1.0}
    gauges = values(families["conveyor_tasks"], "conveyor_tasks")
    assert {queue for queue, _ in gauges} == {"q0", "other"}
    assert gauges[("other", "queued")] == 199.0


async def test_the_operator_names_queues_and_handlers_to_report_as_themselves(
    make_engine: Callable[..., Engine],
) -> None:
    settings = ServerSettings(
        timer_interval_s=0.05,
        metrics_queues=("tenant-*", "emails"),
        metrics_handlers=("myapp.*",),
    )
    async with serve(make_engine(), settings) as s:
        for queue, handler in [
            ("tenant-a", "myapp.x:run"), ("emails", "other.y:run"), ("misc", "myapp.z:run"),
        ]:  # fmt: skip
            await s.submit(queue=queue, handler=handler)
        submitted = values(
            (await scrape(s))["conveyor_tasks_submitted"], "conveyor_tasks_submitted_total"
        )
    assert submitted == {
        ("myapp.x:run", "tenant-a"): 1.0,
        ("other", "emails"): 1.0,
        ("myapp.z:run", "other"): 1.0,
    }


def test_learned_and_pattern_values_are_capped() -> None:
    values_ = LabelValues.of(["q-*", "fixed"])
    assert values_("fixed") == "fixed" and values_("nope") == OTHER
    kept = [values_(f"q-{i}") for i in range(MAX_LEARNED + 50)]
    assert kept.count(OTHER) == 50
    values_.learn("late")
    assert values_("late") == OTHER
    assert values_("q-0") == "q-0" and values_("fixed") == "fixed"


async def test_slots_per_queue_and_pauses(served: Served) -> None:
    both = await served.register(name="both", queues=["a", "b"], concurrency=3)
    await served.register(name="only-b", queues=["b"], concurrency=2)
    gone = await served.register(name="gone", queues=["a"], concurrency=5)
    assert (await served.delete(f"/workers/{gone}?stopped=true")).status_code == 204
    await served.submit(queue="a")
    assert len(await served.lease(both, max=1)) == 1
    assert (await served.post("/queues/b/pause")).status_code == 200

    families = await scrape(served)

    # A worker that serves several queues counts its slots in each; dead and gone ones in none.
    slots = families["conveyor_queue_slots"]
    assert values(slots, "conveyor_queue_slots") == {("a",): 3, ("b",): 5}
    busy = values(families["conveyor_tasks"], "conveyor_tasks", state="running")
    assert busy[("a",)] == 1
    paused = values(families["conveyor_paused"], "conveyor_paused")
    assert paused == {("b", "queue"): 1}
