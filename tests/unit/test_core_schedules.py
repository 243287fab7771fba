"""Cron firing times and the misfire policy, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from conveyor.core.schedules import Misfire, ScheduleSpec, due_firings, firing_key, next_after
from conveyor.core.spec import TaskSpec

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
TASK = TaskSpec(handler="echo")


def spec(
    cron: str = "*/5 * * * *", misfire: Misfire = Misfire.ONCE, tz: str = "UTC"
) -> ScheduleSpec:
    return ScheduleSpec(name="s", cron=cron, timezone=tz, task=TASK, misfire=misfire)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("misfire", "now", "fires", "next_run"),
    [
        pytest.param(Misfire.ONCE, at(-1), [], at(0), id="not-due"),
        pytest.param(Misfire.ONCE, at(0), [at(0)], at(5), id="on-time"),
        pytest.param(Misfire.ONCE, at(0.5), [at(0)], at(5), id="within-grace"),
        pytest.param(Misfire.ONCE, at(12), [at(10)], at(15), id="once:late-gives-latest"),
        pytest.param(Misfire.ONCE, at(10.5), [at(10)], at(15), id="once:late-but-latest-on-time"),
        pytest.param(Misfire.SKIP, at(12), [], at(15), id="skip:late-gives-none"),
        pytest.param(Misfire.SKIP, at(10.5), [at(10)], at(15), id="skip:keeps-on-time"),
        pytest.param(Misfire.ALL, at(12), [at(0), at(5), at(10)], at(15), id="all:every-missed"),
    ],
)
def test_misfire_policy(
    misfire: Misfire, now: datetime, fires: list[datetime], next_run: datetime
) -> None:
    firings = due_firings(spec(misfire=misfire), at(0), now)
    assert firings.times == fires
    assert firings.next_run_at == next_run


def test_catch_up_is_bounded() -> None:
    firings = due_firings(spec("* * * * *", Misfire.ALL), at(0), at(60 * 24 * 30))
    assert len(firings.times) == 100
    assert firings.next_run_at > at(60 * 24 * 30)


def test_timezone_and_daylight_saving() -> None:
    # 02:30 does not exist in New York on 2026-03-08: the firing moves, it is not lost
    fire = next_after("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC))
    assert fire.tzinfo is UTC
    assert (
        fire == datetime(2026, 3, 7, 19, 30, tzinfo=UTC) or fire.date().isoformat() == "2026-03-08"
    )
    later = next_after("0 9 * * *", "Europe/Paris", datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert later == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)


def test_seconds_field() -> None:
    assert next_after("* * * * * */10", "UTC", T0) == T0 + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"cron": "every minute"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "has space"}, "name"),
        ({"task": {"handler": "echo", "key": "fixed"}}, "task"),
        ({"misfire": "sometimes"}, "misfire"),
    ],
)
def test_invalid_schedules_name_the_field(fields: dict[str, object], bad: str) -> None:
    data = {"name": "s", "cron": "* * * * *", "task": {"handler": "echo"}, **fields}
    with pytest.raises(ValidationError) as caught:
        ScheduleSpec.model_validate(data)
    assert caught.value.errors()[0]["loc"][0] == bad


def test_firing_keys_differ_by_time_and_name() -> None:
    assert len({firing_key("a", at(0)), firing_key("a", at(5)), firing_key("b", at(0))}) == 3
