"""The SQLite store when its file misbehaves: locked by another process, disk full, read-only.

Each fault must give a clear 503 (never a 500, never a hang), corrupt nothing, and go away by
itself once the cause does, without restarting the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.engine import Engine, EngineSettings
from conveyor.store.sqlite import SQLiteStore
from tests.integration.conftest import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that can really fill up, and be remounted read-only."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk is full; deleting it frees the space again."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_a_database_locked_by_another_process_gives_503_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    engine = Engine(SQLiteStore(db, busy_timeout_s=0.3), settings=EngineSettings())
    async with serve(engine) as served:
        await served.submit(args=["before"])
        locker = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
             "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            blocked = await served.post("/tasks", json={"handler": "echo", "args": [1]})
            assert blocked.status_code == 503, blocked.text
            assert "locked" in blocked.text and float(blocked.headers["retry-after"]) > 0
            reads = await served.get("/tasks")
            assert reads.status_code == 200, "readers are not blocked by a writer (WAL)"
        finally:
            assert locker.stdin is not None
            locker.stdin.close()
            locker.wait(10)
            assert locker.stdout is not None
            locker.stdout.close()
        after = await served.post("/tasks", json={"handler": "echo", "args": [2]})
        assert after.status_code == 201, after.text
    assert integrity(db) == "ok"


async def test_a_full_disk_gives_503_loses_nothing_acknowledged_and_recovers(
    small_disk: Path,
) -> None:
    db = small_disk / "c.db"
    engine = Engine(SQLiteStore(db), settings=EngineSettings())
    acknowledged: list[str] = []
    async with serve(engine) as served:
        for i in range(5):
            acknowledged.append((await served.submit(args=[f"before {i}"]))["id"])
        filler = fill(small_disk)
        answers = []
        for i in range(50):  # write until the disk refuses (the WAL may have room for a few)
            answer = await served.post("/tasks", json={"handler": "echo", "args": ["x" * 2000, i]})
            answers.append(answer.status_code)
            if answer.status_code == 201:
                acknowledged.append(answer.json()["id"])
            if answer.status_code == 503:
                assert "full" in answer.text and "retry-after" in answer.headers
                break
        assert answers[-1] == 503, f"the disk never filled: {answers}"
        assert set(answers) <= {201, 503}
        filler.unlink()
        recovered = await served.post("/tasks", json={"handler": "echo", "args": ["after"]})
        assert recovered.status_code == 201, recovered.text
        acknowledged.append(recovered.json()["id"])
        for task_id in acknowledged:
            assert (await served.get(f"/tasks/{task_id}")).status_code == 200, (
                "an acknowledged task was lost"
            )
    assert integrity(db) == "ok"


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Path]:
    """A small ext4 filesystem on a loop device: files there can be made immutable (chattr +i),
    which refuses writes even through descriptors that are already open, and even to root."""
    if os.geteuid() != 0:
        pytest.skip("loop devices and chattr need root (CI runs as root)")
    image, mount_point = tmp_path / "disk.img", tmp_path / "ext4"
    mount_point.mkdir()
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
    )
    if made.returncode or mounted.returncode:
        pytest.skip(f"no loop-mounted ext4 here: {made.stderr.strip() or mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["chattr", "-R", "-i", str(mount_point)], check=False, capture_output=True)
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_a_database_that_cannot_be_written_gives_503_then_recovers(ext4_disk: Path) -> None:
    db = ext4_disk / "c.db"
    engine = Engine(SQLiteStore(db), settings=EngineSettings())
    files = [str(db), f"{db}-wal"]  # not -shm: it is memory-mapped, and SQLite needs it to read
    async with serve(engine) as served:
        first = await served.submit(args=["before"])
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            refused = await served.post("/tasks", json={"handler": "echo", "args": [1]})
            assert refused.status_code == 503, refused.text
            assert "retry-after" in refused.headers
            assert (await served.get(f"/tasks/{first['id']}")).status_code == 200, "reads go on"
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        again = await served.post("/tasks", json={"handler": "echo", "args": [2]})
        assert again.status_code == 201, again.text
        assert (await served.get(f"/tasks/{first['id']}")).status_code == 200
    assert integrity(db) == "ok"
