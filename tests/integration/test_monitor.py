"""System monitoring: host metrics with I/O rates, the server's short histories of its host, its
workers and its task counts, GET /monitor and /status/history, and `conveyor monitor`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio import to_thread
from click.testing import CliRunner

from conveyor import hostmetrics
from conveyor.api.schemas import MetricPoint, MonitorOut
from conveyor.cli import monitor as monitor_cli
from conveyor.cli.main import cli
from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.hostmetrics import SystemMetrics
from conveyor.server.app import context
from conveyor.server.monitoring import Monitoring, metric_point
from conveyor.testing import Cluster, wait_until
from tests.integration.conftest import Served

ROOT = Path(__file__).resolve().parents[2]

# ---- host metrics -------------------------------------------------------------------------------


def test_a_sample_keeps_the_old_keys_and_adds_io_counts_and_rates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counters = iter(
        [
            {"disk_read_bytes": 1000, "disk_write_bytes": 0, "net_sent_bytes": 50, "net_recv_bytes": 0},
            {"disk_read_bytes": 3000, "disk_write_bytes": 500, "net_sent_bytes": 10, "net_recv_bytes": 0},
        ]
    )  # fmt: skip
    monkeypatch.setattr(hostmetrics, "_io_counters", lambda: next(counters))
    times = iter([100.0, 102.0])
    metrics = SystemMetrics(clock=lambda: next(times))
    try:
        sample = metrics.sample()
    finally:
        metrics.close()
    for key in ("cpu_percent", "cpu_per_core_percent", "cpu_count", "load_avg", "memory_total_bytes",
                "memory_used_bytes", "memory_percent", "disk_total_bytes", "disk_used_bytes",
                "disk_percent", "gpus"):  # fmt: skip
        assert key in sample, key
    assert sample["gpus"] == []  # no NVML here, and no error either
    assert sample["disk_read_bytes"] == 3000
    assert sample["disk_read_bytes_per_s"] == 1000.0  # 2000 bytes over 2 s
    assert sample["disk_write_bytes_per_s"] == 250.0
    assert sample["net_sent_bytes_per_s"] == 0.0  # went backwards (a NIC went away): no rate < 0


def test_real_io_counters_give_non_negative_rates() -> None:
    metrics = SystemMetrics()
    try:
        metrics.sample()
        sample = metrics.sample()
    finally:
        metrics.close()
    rates = {k: v for k, v in sample.items() if k.endswith("_per_s")}
    assert "net_recv_bytes_per_s" in rates  # every Linux host has a loopback interface
    assert all(isinstance(v, float) and v >= 0 for v in rates.values())


def test_metric_point_keeps_the_main_figures_and_averages_gpus() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    gpu = {"utilization_percent": 30.0, "memory_total_bytes": 100, "memory_used_bytes": 25}
    point = metric_point(
        {
            "cpu_percent": 12.5,
            "memory_percent": 40,
            "disk_percent": 70.0,
            "load_avg": [1.5, 1.0, 0.5],
            "net_recv_bytes_per_s": 2048.0,
            "gpus": [gpu, {**gpu, "utilization_percent": 50.0, "memory_used_bytes": 75}],
        },
        at,
    )
    assert point == MetricPoint(
        at=at, cpu_percent=12.5, memory_percent=40.0, disk_percent=70.0, load_1m=1.5,
        net_recv_bytes_per_s=2048.0, gpu_percent=40.0, gpu_memory_percent=50.0,
    )  # fmt: skip
    # A heartbeat may carry anything: what is not a number is simply absent.
    odd = metric_point({"cpu_percent": True, "load_avg": "high", "gpus": "none"}, at)
    assert odd == MetricPoint(at=at)


# ---- the server's histories -----------------------------------------------------------------


@contextmanager
def monitoring(engine: Engine, size: int = 150) -> Iterator[Monitoring]:
    host = SystemMetrics()
    try:
        yield Monitoring(engine, host, interval_s=1.0, size=size)
    finally:
        host.close()


def heartbeat(engine: Engine, worker_id: str, cpu: float) -> None:
    engine.heartbeat(worker_id, [], {"cpu_percent": cpu, "memory_percent": 10.0})


def test_histories_are_bounded_and_a_worker_point_comes_with_each_new_heartbeat(
    server_engine: Engine,
) -> None:
    engine = server_engine
    with monitoring(engine, size=3) as mon:
        worker = engine.register_worker(name="w", host="h", pid=1, concurrency=1)
        mon.sample_once()  # registered, no heartbeat yet: no metrics, no point
        assert mon.history().worker_history == {}
        for cpu in (1.0, 2.0, 3.0, 4.0):
            heartbeat(engine, worker.id, cpu)
            mon.sample_once()
            mon.sample_once()  # the same heartbeat twice: one point
        history = mon.history()
        assert [p.cpu_percent for p in history.worker_history[worker.id]] == [2.0, 3.0, 4.0]
        assert len(history.server_history) == 3
        assert history.server["cpu_count"] >= 1  # the latest full sample of the host
        assert len(mon.status_history()) == 3

        engine.deregister_worker(worker.id)
        mon.sample_once()
        assert mon.history().worker_history == {}  # only live workers are kept


def test_since_returns_only_newer_points(server_engine: Engine) -> None:
    with monitoring(server_engine) as mon:
        mon.sample_once()
        first = mon.history().server_history[-1].at
        mon.sample_once()
        newer = mon.history(since=first)
        assert [p.at for p in newer.server_history] == [mon.history().server_history[-1].at]
        assert mon.status_history(since=first + timedelta(days=1)) == []


def test_status_points_count_states_and_the_tasks_this_server_saw_finish(
    server_engine: Engine,
) -> None:
    engine = server_engine
    with monitoring(engine) as mon:
        unsubscribe = engine.events.subscribe(mon.on_changes)
        try:
            tasks = [engine.submit(_spec()) for _ in range(3)]
            engine.cancel(tasks[0].id)
            engine.cancel(tasks[1].id)
            mon.sample_once()
            engine.cancel(tasks[2].id)
            mon.sample_once()
        finally:
            unsubscribe()
    first, second = mon.status_history()
    assert (first.finished, second.finished) == (2, 1)
    assert first.counts["queued"] == 1 and first.counts["cancelled"] == 2
    assert second.counts["cancelled"] == 3
    assert set(second.counts) == {
        "pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled",
    }  # fmt: skip


def test_a_failing_store_stops_neither_the_pass_nor_the_host_history(
    server_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monitoring(server_engine) as mon:

        def broken() -> None:
            raise RuntimeError("database is gone")

        monkeypatch.setattr(server_engine, "workers", broken)
        mon.sample_once()
        assert len(mon.history().server_history) == 1
        assert mon.status_history() == []


# ---- HTTP -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_monitor_returns_current_metrics_and_the_histories(served: Served) -> None:
    worker = await served.register(name="box")
    beat = {"metrics": {"cpu_percent": 42.0, "memory_percent": 5.0, "gpus": []}}
    assert (await served.post(f"/workers/{worker}/heartbeat", json=beat)).status_code == 200
    await _pass(served)
    body = MonitorOut.model_validate((await served.get("/monitor")).json())
    assert body.interval_s > 0
    assert body.server["cpu_count"] >= 1
    assert "net_recv_bytes_per_s" in body.server
    assert body.server_history and body.server_history[-1].memory_percent is not None
    assert [p.cpu_percent for p in body.worker_history[worker]] == [42.0]
    [entry] = body.workers
    assert entry["metrics"] == beat["metrics"]

    last = body.server_history[-1].at
    later = (await served.get("/monitor", params={"since": last.isoformat()})).json()
    assert later["server_history"] == []
    assert later["worker_history"] == {worker: []}


@pytest.mark.anyio
async def test_status_history_counts_tasks_over_time(served: Served) -> None:
    task = await served.submit()
    await served.post(f"/tasks/{task['id']}/cancel")
    await _pass(served)
    body = (await served.get("/status/history")).json()
    assert body["interval_s"] > 0
    assert body["points"][-1]["counts"]["cancelled"] == 1
    assert sum(p["finished"] for p in body["points"]) == 1
    bad = await served.get("/status/history", params={"since": "yesterday"})
    assert bad.status_code == 422


@pytest.mark.anyio
async def test_the_server_samples_on_its_own_once_started(served: Served) -> None:
    deadline = anyio.current_time() + 10
    while not (await served.get("/status/history")).json()["points"]:
        assert anyio.current_time() < deadline, "no monitoring pass within 10 s of start-up"
        await anyio.sleep(0.05)
    monitor = (await served.get("/monitor")).json()
    assert monitor["server_history"]


async def _pass(served: Served) -> None:
    """One monitoring pass now, rather than waiting for the timer."""
    await to_thread.run_sync(context(served.app).monitoring.sample_once)


def _spec(**fields: Any) -> TaskSpec:
    return TaskSpec(handler="sha256", **fields)


# ---- conveyor monitor -----------------------------------------------------------------------


class FakeClient:
    def __init__(self, answer: MonitorOut) -> None:
        self.answer = answer
        self.calls = 0

    def monitor(self) -> MonitorOut:
        self.calls += 1
        return self.answer


def sample_monitor() -> MonitorOut:
    now = datetime.now(UTC)
    gpu = {"index": 0, "name": "A100", "utilization_percent": 77.0,
           "memory_used_bytes": 2 * 1024**3, "memory_total_bytes": 40 * 1024**3}  # fmt: skip
    metrics = {
        "host": "gpu-box", "cpu_percent": 95.0, "memory_percent": 50.0,
        "memory_used_bytes": 8 * 1024**3, "memory_total_bytes": 16 * 1024**3,
        "disk_percent": 10.0, "disk_used_bytes": 10 * 1024**3, "disk_total_bytes": 100 * 1024**3,
        "disk_read_bytes_per_s": 1536.0, "net_recv_bytes_per_s": 3 * 1024**2, "gpus": [gpu],
    }  # fmt: skip
    return MonitorOut(
        server={"host": "head", "cpu_percent": 3.0, "gpus": []},
        workers=[
            {
                "id": "w1",
                "name": "trainer",
                "host": "gpu-box",
                "state": "alive",
                "last_seen_at": now.isoformat(),
                "metrics": metrics,
            }
        ],
        interval_s=2.0,
        worker_history={"w1": [MetricPoint(at=now, cpu_percent=c) for c in (0, 50, 100)]},
    )


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient(sample_monitor())

    @contextmanager
    def connect(server: str, token: str | None) -> Iterator[FakeClient]:
        yield fake

    monkeypatch.setattr(monitor_cli, "connect", connect)
    return fake


def test_monitor_once_prints_the_server_and_each_worker(fake_client: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["monitor", "--once"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "server head" in out and "trainer" in out and "alive" in out
    assert "95.0%" in out and "50.0%" in out
    assert "8.0G/16.0G" in out
    assert "1.5K/s" in out and "3.0M/s" in out
    assert "#0 77.0% 2.0G/40.0G" in out
    assert "▁▅█" in out  # the CPU trend from the history
    assert "none" in out  # the server has no GPU
    assert "Ctrl-C" not in out
    assert fake_client.calls == 1


def test_monitor_json_prints_one_snapshot(fake_client: FakeClient) -> None:
    result = CliRunner().invoke(cli, ["monitor", "--json"])
    assert result.exit_code == 0, result.output
    assert MonitorOut.model_validate_json(result.output).workers[0]["name"] == "trainer"


def test_sparkline_scales_to_the_top_and_leaves_gaps() -> None:
    assert monitor_cli.sparkline([0.0, 50.0, None, 100.0, 250.0]) == "▁▅ ██"


@pytest.mark.slow
def test_monitor_once_against_a_live_server_and_worker(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, cwd=ROOT)
    cluster.start_server()
    try:
        cluster.start_worker("watched")
        wait_until(lambda: _has_metrics(cluster), 30, "the worker's first heartbeat")
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", "monitor", "--once", "--server", cluster.url],
            capture_output=True, text=True, timeout=60, env={"COLUMNS": "120", "PATH": ""},
        )  # fmt: skip
    finally:
        cluster.stop()
    assert done.returncode == 0, done.stderr
    assert "watched" in done.stdout
    assert "1 live worker(s)" in done.stdout


def _has_metrics(cluster: Cluster) -> bool:
    workers = httpx.get(f"{cluster.url}/api/v1/workers", timeout=2).json()["workers"]
    return any(w["metrics"] for w in workers)
