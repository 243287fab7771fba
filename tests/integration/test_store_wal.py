"""A SQLite database whose write-ahead log was lost or damaged after a crash is refused, saying
what is lost, instead of opening without the commits the log held.

Each case crashes a real process that holds the store open (os._exit: no close, as kill -9),
then does to its log what a careless operator or a failing disk would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.errors import StoreError
from conveyor.store.base import Durability
from conveyor.store.sqlite import SQLiteStore

_CRASH_AFTER_SUBMITS = """
import os, sys
from conveyor.core.spec import TaskSpec
from conveyor.engine import Engine
from conveyor.store.base import Durability
from conveyor.store.sqlite import SQLiteStore
engine = Engine(SQLiteStore(sys.argv[1]))
for i in range(int(sys.argv[2])):
    engine.submit(TaskSpec(handler="echo", name=f"t{i}", args=["x" * 3000]))
os._exit(0)  # no close: the log is not folded into the file
"""


def crash_after_submits(db: Path, count: int) -> None:
    subprocess.run([sys.executable, "-c", _CRASH_AFTER_SUBMITS, str(db), str(count)], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0, "the commits must be in the log only"


def names(db: Path, **options: bool) -> set[str]:
    store = SQLiteStore(db, **options)
    try:
        return {t.name or "" for t in Engine(store).list_tasks(limit=1000)}
    finally:
        store.close()


def test_a_crash_with_the_log_intact_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    crash_after_submits(db, 5)
    assert names(db) == {f"t{i}" for i in range(5)}


def test_a_clean_close_leaves_nothing_to_check(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = SQLiteStore(db)
    Engine(store).submit(TaskSpec(handler="echo", name="kept"))
    store.close()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    assert names(db) == {"kept"}


def test_a_missing_log_after_a_crash_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    crash_after_submits(db, 5)
    os.remove(f"{db}-wal")
    with pytest.raises(StoreError, match=r"write-ahead log .* is missing"):
        SQLiteStore(db)
    # Opened anyway, on purpose: the loss is what the message said.
    assert names(db, accept_wal_loss=True) == set()


def test_a_log_damaged_in_the_middle_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    crash_after_submits(db, 20)
    wal = Path(f"{db}-wal")
    data = bytearray(wal.read_bytes())
    middle = 32 + (len(data) - 32) // 3  # inside an early frame, well before the last commit
    data[middle] ^= 0xFF
    wal.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        SQLiteStore(db)


def test_a_log_cut_short_at_its_end_is_a_crash_not_damage(tmp_path: Path) -> None:
    """The last frame cut short is a commit the crash interrupted, never acknowledged."""
    db = tmp_path / "c.db"
    crash_after_submits(db, 5)
    wal = Path(f"{db}-wal")
    data = wal.read_bytes()
    wal.write_bytes(data[: len(data) - 100])
    assert len(names(db)) >= 4


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_sets_what_sqlite_waits_for(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    """`normal` survives a process crash (the log written, not flushed); `full` waits for the
    disk at every commit and survives power loss too."""
    from conveyor.store import open_store

    store = open_store(str(tmp_path / "d.db"), durability=Durability(durability))
    try:
        assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == synchronous  # type: ignore[attr-defined]
    finally:
        store.close()


def test_conveyor_run_refuses_a_database_whose_log_was_lost(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    crash_after_submits(db, 3)
    os.remove(f"{db}-wal")
    job = tmp_path / "job.yaml"
    job.write_text("tasks:\n  - {name: a, handler: echo, args: [1]}\n")
    run = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", str(job), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "is missing" in run.stderr and "--accept-wal-loss" in run.stderr
