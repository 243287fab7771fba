"""The cron examples say what they do: the README's every-30-seconds schedule fires every 30
seconds, and `conveyor schedule add --help` states the fields' order (seconds last)."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.core.schedules import next_after

README = Path(__file__).resolve().parents[2] / "README.md"
START = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)


def firings(cron: str, n: int = 4) -> list[datetime]:
    found, after = [], START
    for _ in range(n):
        after = next_after(cron, "UTC", after)
        found.append(after)
    return found


def gaps(cron: str) -> set[timedelta]:
    times = firings(cron)
    return {b - a for a, b in itertools.pairwise(times)}


def test_the_readme_every_30_seconds_example_fires_every_30_seconds() -> None:
    line = next(x for x in README.read_text().splitlines() if "schedule add heartbeat" in x)
    cron = re.search(r'"([^"]+)"', line)
    assert cron, line
    assert "every 30 s" in line
    assert gaps(cron.group(1)) == {timedelta(seconds=30)}


def test_the_readme_says_what_the_seconds_first_mistake_does() -> None:
    text = " ".join(README.read_text().split())
    assert '`"*/30 * * * * *"` fires every second of minutes :00 and :30' in text
    times = firings("*/30 * * * * *")
    assert gaps("*/30 * * * * *") == {timedelta(seconds=1)}
    assert all(t.minute in (0, 30) for t in times)


def test_schedule_add_help_states_the_field_order() -> None:
    result = CliRunner().invoke(cli, ["schedule", "add", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert "minute hour day-of-month month day-of-week [second]" in help_text
    assert '"* * * * * */30" every 30 seconds' in help_text
    assert "seconds, comes LAST" in help_text
