"""Job files built to explode: nested YAML aliases ("billion laughs"), alias loops, deep nesting.

Each must be refused quickly with one line naming the file, by `load_job_file` and by the
commands that read job files (`conveyor run`, `conveyor apply`). The attack files are read in
child processes with a timeout and a memory cap, so that a regression fails instead of hanging
the suite or exhausting the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import conveyor
from conveyor.jobfile import load_job_file

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
QUICK_S = 10.0
"""Far more than a refusal takes (milliseconds); far less than expanding the file would."""
MEMORY_CAP_BYTES = 2 * 1024**3


def laughs(levels: int = 9, width: int = 9) -> str:
    """One task whose kwargs alias each level `width` times: width**levels strings in all."""
    items = ",".join(["lol"] * width)
    lines = ["- handler: echo", "  kwargs:", f"    l0: &l0 [{items}]"]
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * width)
        lines.append(f"    l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_the_attack_file_is_small() -> None:
    assert len(laughs().encode()) < 600


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -c code args` with this checkout's source; fails the test if it runs too long."""
    source = Path(conveyor.__file__).resolve().parents[1]  # the code this test imported
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])}
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=QUICK_S,
            env=env,
            cwd=ROOT,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still reading the file after {QUICK_S} s: {' '.join(args)}")


LOAD = """
import sys
from datetime import UTC, datetime
from conveyor.errors import InvalidSpecError
from conveyor.jobfile import load_job_file
try:
    load_job_file(sys.argv[1], now=datetime.now(UTC))
except InvalidSpecError as exc:
    print(exc)
    sys.exit(3)
"""


def test_nested_aliases_are_refused_before_they_are_expanded(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    done = run_python(LOAD, str(path))
    assert done.returncode == 3, done.stderr[-2000:]
    [line] = done.stdout.strip().splitlines()
    assert "alias" in line


@pytest.mark.parametrize("command", ["run", "apply"])
def test_the_commands_refuse_it_in_one_line_naming_the_file(tmp_path: Path, command: str) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    extra = ["--db", str(tmp_path / "x.db")] if command == "run" else ["--server", "127.0.0.1:9"]
    done = run_python(
        "import sys; from conveyor.cli.main import main; sys.argv[0] = 'conveyor'; main()",
        command,
        str(path),
        *extra,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert str(path) in lines[0] and "alias" in lines[0]


def test_aliases_that_expand_moderately_are_fine(tmp_path: Path) -> None:
    # Anchors and merge keys as people use them: shared defaults, repeated lists.
    path = tmp_path / "shared.yaml"
    path.write_text(
        "defaults: &d {timeout_s: 5}\n"
        "tasks:\n"
        "  - {name: a, handler: echo, args: &xs [1, 2, 3], <<: *d}\n"
        "  - {name: b, handler: echo, args: *xs, labels: {team: x}, <<: *d}\n"
    )
    job = load_job_file(path, now=NOW)
    assert [s.args for s in job.specs] == [[1, 2, 3], [1, 2, 3]]
    assert all(s.timeout_s == 5 for s in job.specs)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("- {handler: echo, args: &a [1, *a]}\n")
    done = run_python(LOAD, str(path))
    assert done.returncode == 3, done.stderr[-2000:]
    [line] = done.stdout.strip().splitlines()
    assert "alias" in line


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_deeply_nested_file_is_refused_not_a_crash(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text('[{"handler": "echo", "args": ' + "[" * 5000 + "]" * 5000 + "}]")
    done = run_python(LOAD, str(path))
    assert done.returncode == 3, done.stderr[-2000:]
    [line] = done.stdout.strip().splitlines()
    assert "deep" in line
