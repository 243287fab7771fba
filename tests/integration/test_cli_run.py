"""`conveyor run FILE` as a user runs it: a real process, exit codes, output."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_pipeline_succeeds_and_reruns_idempotently(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    first = conveyor(
        "run", str(ROOT / "examples" / "pipeline.yaml"), "--db", db, "--json", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    report = outcome["tasks"]["report"]["result"]
    assert report["text"] == outcome["tasks"]["compose"]["result"]
    assert report["sha256"] == outcome["tasks"]["digest"]["result"]
    again = conveyor(
        "run", str(ROOT / "examples" / "pipeline.yaml"), "--db", db, "--json", cwd=tmp_path
    )
    assert json.loads(again.stdout)["tasks"] == outcome["tasks"], (
        "a rerun continues, it does not redo"
    )


def test_failed_job_exits_non_zero_with_table(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "tasks:\n  - {name: bad, handler: fail, args: [boom]}\n  - {name: ok, handler: echo, args: [1]}\n"
    )
    result = conveyor("run", str(jobs), "--db", str(tmp_path / "j.db"), cwd=tmp_path)
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stdout and "did not succeed" in result.stdout


def test_invalid_file_is_one_line_and_submits_nothing(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("tasks:\n  - {name: a, handler: echo, priority: high}\n")
    db = tmp_path / "j.db"
    result = conveyor("run", str(jobs), "--db", str(db), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "task 'a', field 'priority'" in result.stderr
    assert not db.exists(), "nothing may be created for an invalid file"


def test_a_job_files_limits_hold_its_tasks_to_them(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "limits:\n  one: {concurrency: 1}\n"
        "tasks:\n"
        + "".join(
            f"  - {{name: s{i}, handler: sleep, args: [0.2], limits: [one]}}\n" for i in range(3)
        )
    )
    db = tmp_path / "j.db"
    result = conveyor("run", str(jobs), "--db", str(db), "--concurrency", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        spans = sorted(conn.execute("SELECT started_at, finished_at FROM attempts").fetchall())
        (limit,) = conn.execute("SELECT name, concurrency FROM limits").fetchall()
    assert limit == ("one", 1)
    assert len(spans) == 3
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), (
        "one at a time, though four could run"
    )
