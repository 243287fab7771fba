"""Screenshots of the dashboard for the README: docs/screenshots/*.png.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts a server and two workers on a temporary database (conveyor.testing.Cluster), gives them
a workload (a job file, two labelled workflows, waves of small tasks, a few failures, a long
task, schedules, a paused queue), then photographs every page at laptop size, three at phone
size and two in the dark colour scheme with Debian's Chromium
(/usr/bin/chromium; scripts/ensure-chromium.sh installs it). Takes about a minute. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.jobfile import load_job_file
from conveyor.testing import Cluster

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


def workload(client: Client) -> dict[str, str]:
    """Submit a varied workload; returns the ids of the tasks worth a screenshot."""
    job = load_job_file(ROOT / "examples" / "pipeline.yaml", now=datetime.now(UTC))
    client.submit_batch(job.specs)

    etl = {"workflow": "nightly-etl"}
    extract, _, _, join, _ = client.submit_batch(
        [
            TaskSpec(handler="echo", name="extract", args=["orders 2026-11-22"], labels=etl),
            TaskSpec(handler="sha256", name="clean-orders", args=[{"$result": "extract"}], labels=etl),
            TaskSpec(handler="sha256", name="clean-customers", args=["customers"], depends_on=["extract"], labels=etl),
            TaskSpec(handler="echo", name="join", kwargs={"orders": {"$result": "clean-orders"}, "customers": {"$result": "clean-customers"}}, labels=etl),
            TaskSpec(handler="sleep", name="publish", args=[0.5], depends_on=["join"], labels=etl),
        ]
    )  # fmt: skip

    training = {"workflow": "model-training"}
    _, train, _, _ = client.submit_batch(
        [
            TaskSpec(handler="sleep", name="prepare-data", args=[1.0], labels=training),
            TaskSpec(handler="sleep", name="train", args=[600], depends_on=["prepare-data"], labels=training),
            TaskSpec(handler="echo", name="evaluate", args=["metrics"], depends_on=["train"], labels=training),
            TaskSpec(handler="echo", name="deploy", args=["v2"], depends_on=["evaluate"], labels=training),
        ]
    )  # fmt: skip

    reports = {"workflow": "weekly-report"}
    _, validate, _ = client.submit_batch(
        [
            TaskSpec(handler="echo", name="fetch-sales", args=["sales"], labels=reports),
            TaskSpec(handler="fail", name="validate-sales", args=["3 rows have a negative amount"], depends_on=["fetch-sales"], max_retries=1, retry={"backoff_s": 0.2}, labels=reports),
            TaskSpec(handler="echo", name="render-report", args=["pdf"], depends_on=["validate-sales"], labels=reports),
        ]
    )  # fmt: skip

    reindex = client.submit("echo", "later", name="reindex", queue="nightly")  # no worker serves it
    client.pause_queue("nightly")  # the banner and the queue table show it
    client.submit("echo", "tomorrow", name="send-digest", delay_s=3600)
    doomed = client.submit("sleep", 5, name="resize-banner", queue="images", priority=5)
    client.cancel(doomed.id)

    # Schedules: two that fire, one paused, one that cannot fire (its dependency was deleted).
    client.add_schedule("hourly-report", "0 * * * *", TaskSpec(handler="echo", args=["report"]))
    client.add_schedule(
        "cleanup", "30 2 * * *", TaskSpec(handler="echo", args=["tmp"]), timezone="Europe/Paris"
    )
    client.pause_schedule("cleanup")
    seed = client.submit("echo", "seed", name="inventory-seed", queue="nightly")
    client.add_schedule(
        "sync-inventory",
        "* * * * * */5",
        TaskSpec(handler="echo", args=["sync"], depends_on=[seed.id]),
    )
    client.cancel(seed.id)
    client.delete(seed.id)
    return {
        "join": join.id,
        "train": train.id,
        "validate": validate.id,
        "extract": extract.id,
        "reindex": reindex.id,
    }


def waves(client: Client, seconds: float) -> None:
    """Small tasks arriving in bursts, so that the charts have something to show."""
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        specs = []
        for _ in range(rng.randint(4, 16)):
            n += 1
            kind = rng.random()
            if kind < 0.5:
                specs.append(
                    TaskSpec(
                        handler="sha256", name=f"thumbnail-{n}", args=[f"image {n}"], queue="images"
                    )
                )
            elif kind < 0.85:
                specs.append(
                    TaskSpec(
                        handler="sleep",
                        name=f"email-{n}",
                        args=[round(rng.uniform(0.05, 0.6), 2)],
                        queue="emails",
                    )
                )
            elif kind < 0.95:
                specs.append(TaskSpec(handler="echo", name=f"ping-{n}", args=[n]))
            else:
                specs.append(
                    TaskSpec(handler="fail", name=f"flaky-{n}", args=["upstream timed out"])
                )
        client.submit_batch(specs)  # fmt: skip
        time.sleep(rng.uniform(0.5, 2.0))


def shoot(page: Page, url: str, path: Path, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready, timeout=20_000)
    page.wait_for_timeout(2500)  # a couple of live updates: charts and times settle
    # Whole pages, but the long task list only as far as the screen shows it.
    page.screenshot(path=str(path), full_page="/tasks" not in url)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--waves-s", type=float, default=40.0, help="Seconds of background load.")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), cwd=ROOT)
        cluster.start_server()
        try:
            for name in ("gpu-box-1", "cpu-box-2"):
                cluster.start_worker(name, concurrency=4, queues="default,images,emails")
            with Client(cluster.url) as client:
                ids = workload(client)
                waves(client, options.waves_s)
                client.result(ids["join"], timeout_s=60)
            base = cluster.url + "/#"
            pages = [
                ("overview", "/", ".state-card"),
                ("tasks", "/tasks?label=workflow=nightly-etl", "tr[data-task-id]"),
                ("task", f"/task/{ids['join']}", ".dag .node"),
                ("task-failed", f"/task/{ids['validate']}", "[data-testid=task-error]"),
                ("task-waiting", f"/task/{ids['reindex']}", "[data-testid=why-main]"),
                ("workflows", "/workflows", "[data-workflow-id]"),
                ("workflow", f"/workflow/{ids['train']}", ".dag .node"),
                ("workers", "/workers", "[data-host] polyline"),
                ("failed", "/failed", "[data-testid=failure-groups] article"),
                ("schedules", "/schedules", "[data-testid=schedule-error]"),
                ("submit", "/submit", "[data-testid=submit-task]"),
            ]
            phone = [
                ("overview-phone", "/", ".state-card"),
                ("task-phone", f"/task/{ids['validate']}", "[data-testid=timeline]"),
                ("workflow-phone", f"/workflow/{ids['extract']}", ".dag .node"),
            ]
            dark = [
                ("overview-dark", "/", ".state-card"),
                ("task-dark", f"/task/{ids['join']}", ".dag .node"),
            ]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                laptop = browser.new_page(viewport=LAPTOP)
                for name, route, ready in pages:
                    shoot(laptop, base + route, options.out / f"{name}.png", ready)
                small = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True)
                for name, route, ready in phone:
                    shoot(small, base + route, options.out / f"{name}.png", ready)
                night = browser.new_page(viewport=LAPTOP, color_scheme="dark")
                for name, route, ready in dark:
                    shoot(night, base + route, options.out / f"{name}.png", ready)
                browser.close()
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
