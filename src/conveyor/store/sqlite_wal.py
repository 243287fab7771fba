"""Is a SQLite database whole? A missing or damaged write-ahead log, found before it is opened.

In WAL mode a commit lands in `FILE-wal` and reaches the database file only at a checkpoint.
SQLite opens a database whose log was deleted, or whose log is damaged part-way, without a word:
every commit since the last checkpoint is silently gone. Two facts tell it apart from a database
that is whole:

- The store writes `closed_cleanly = 0` into the database file itself (checkpointed at once) when
  it opens, and `1` when it closes. Read with the log ignored (`immutable=1`), a 0 means the last
  process to write stopped without closing; its log must then still be there, since SQLite
  deletes a log only once it has folded it into the file.
- A log's frames carry running checksums and the salts of its header. A frame of the current
  salts that fails its checksum ends replay. That is expected at the very end of the log (a write
  cut short by a crash: a commit that was never acknowledged); followed by the commit frame of a
  later transaction, it means frames in the middle were damaged and acknowledged commits after
  them would be dropped.

The format is SQLite's own: https://www.sqlite.org/fileformat.html#the_write_ahead_log
"""

from __future__ import annotations

import os
import sqlite3
import struct
from dataclasses import dataclass

_HEADER = struct.Struct(">IIIIIIII")  # magic, version, page size, checkpoint, salt1, salt2, cksum
_FRAME_HEADER = 24
_MAGIC_LITTLE, _MAGIC_BIG = 0x377F0682, 0x377F0683
_MASK = 0xFFFFFFFF

MARKER_TABLE = "store_state"
"""A table of one row per fact the store keeps about itself; `closed_cleanly` lives there."""


@dataclass(frozen=True, slots=True)
class WalDamage:
    """What is wrong, in words an operator can act on."""

    problem: str


def inspect(path: str) -> WalDamage | None:
    """What is wrong with the database at `path` and its log, or None if nothing is."""
    if not os.path.exists(path) or _closed_cleanly(path) is not False:
        return None  # a new file, one from before this check existed, or closed cleanly
    wal = f"{path}-wal"
    if not os.path.exists(wal):
        return WalDamage(
            f"{path} was not closed cleanly and its write-ahead log {wal} is missing: "
            "the commits made since its last checkpoint are lost"
        )
    with open(wal, "rb") as f:
        data = f.read()
    return _damaged(wal, data)


def _closed_cleanly(path: str) -> bool | None:
    """The marker as the database file itself holds it (the log ignored); None if absent."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(
            f"SELECT value FROM {MARKER_TABLE} WHERE name = 'closed_cleanly'"
        ).fetchone()
    except sqlite3.Error:
        return None  # no marker table: a database from before this check
    finally:
        conn.close()
    return None if row is None else bool(row[0])


def _damaged(wal: str, data: bytes) -> WalDamage | None:
    if len(data) < _HEADER.size:
        return None  # empty or truncated to nothing: there is nothing to replay, nothing lost
    magic, _version, page_size, _checkpoint, salt1, salt2, c1, c2 = _HEADER.unpack_from(data)
    if magic not in (_MAGIC_LITTLE, _MAGIC_BIG):
        return WalDamage(f"the write-ahead log {wal} has a damaged header: none of it can be read")
    order = ">" if magic == _MAGIC_BIG else "<"
    s0, s1 = _checksum(data[:24], order, 0, 0)
    if (s0, s1) != (c1, c2):
        return WalDamage(f"the write-ahead log {wal} has a damaged header: none of it can be read")
    frame = _FRAME_HEADER + page_size
    offset, good_until = _HEADER.size, _HEADER.size
    while offset + frame <= len(data):
        _page, _size, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack_from(">IIIIII", data, offset)
        if (f_salt1, f_salt2) != (salt1, salt2):
            return None  # frames of an earlier log reused in place: the end of this one
        s0, s1 = _checksum(data[offset : offset + 8], order, s0, s1)
        s0, s1 = _checksum(data[offset + _FRAME_HEADER : offset + frame], order, s0, s1)
        if (s0, s1) != (f_c1, f_c2):
            break
        offset += frame
        good_until = offset
    else:
        return None  # every frame checks out
    later = offset + frame
    while later + frame <= len(data):
        _page, size, f_salt1, f_salt2 = struct.unpack_from(">IIII", data, later)
        if (f_salt1, f_salt2) == (salt1, salt2) and size:
            return WalDamage(
                f"the write-ahead log {wal} is damaged at byte {good_until}: commits after "
                "that point would be dropped"
            )
        later += frame
    return None  # only the end is cut short: a commit a crash interrupted, never acknowledged


def _checksum(chunk: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(chunk) // 4}I", chunk)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1
