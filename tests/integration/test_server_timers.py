"""The server's timers keep going when the store fails, and the rolling count of finished tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from conveyor.engine import Engine
from conveyor.errors import StoreBusyError
from conveyor.server.throughput import RollingCount
from conveyor.server.timers import Timers


def test_a_failing_timer_is_logged_and_the_others_still_run(
    server_engine: Engine, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def busy() -> int:
        raise StoreBusyError("database is locked")

    def record(name: str) -> Callable[[], int]:
        def step() -> int:
            ran.append(name)
            return 0

        step.__name__ = name
        return step

    monkeypatch.setattr(server_engine, "release_due", busy)
    monkeypatch.setattr(server_engine, "expire_leases", record("expire_leases"))
    monkeypatch.setattr(server_engine, "expire_workers", record("expire_workers"))
    with caplog.at_level(logging.WARNING, logger="conveyor.server.timers"):
        assert Timers(server_engine, 0.5).run_once() is None  # nothing pending
    assert ran == ["expire_leases", "expire_workers"]
    [record_] = caplog.records
    assert record_.getMessage() == "timer failed; retrying next pass"
    assert record_.timer == "busy"  # type: ignore[attr-defined]


def test_a_pass_comes_early_when_a_task_is_due_before_the_interval(server_engine: Engine) -> None:
    timers = Timers(server_engine, interval_s=0.5)
    now = server_engine.clock.now()
    assert timers._sleep_s(None) == 0.5
    assert timers._sleep_s(now + timedelta(hours=1)) == 0.5
    assert 0.0 < timers._sleep_s(now + timedelta(seconds=0.2)) <= 0.2
    assert timers._sleep_s(now - timedelta(seconds=5)) > 0  # overdue: soon, but never a busy loop


def test_rolling_count_forgets_what_is_older_than_its_window() -> None:
    now = [1000.0]
    count = RollingCount(60, clock=lambda: now[0])
    count.add(3)
    now[0] += 30
    count.add(2)
    count.add(0)
    assert count.total() == 5
    now[0] += 31  # the first three are now 61 s old
    assert count.total() == 2
    now[0] += 60
    assert count.total() == 0
