"""What the file and folder handlers share: argument checks, error messages, descriptions."""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import stat as stat_module
from collections.abc import Iterator
from datetime import UTC, datetime

from conveyor.core.types import JSON
from conveyor.handlers.root import OutsideRootError, Place


@contextlib.contextmanager
def as_given(path: str) -> Iterator[None]:
    """Re-raise OS errors naming the path as the task gave it, not the worker's absolute path."""
    try:
        yield
    except OutsideRootError:
        raise
    except OSError as exc:
        if exc.errno is None or exc.filename is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, path) from None


TEXT_ENCODINGS_HINT = "utf-8 (the default), latin-1, ascii, utf-16, cp1252 or another text encoding"


def text_encoding(encoding: object, argument: str = "encoding") -> str:
    """`encoding` if it names a text encoding, else ValueError.

    Python's codec registry also holds bytes-to-bytes codecs (bz2_codec, zlib_codec, base64_codec,
    hex, uu, quopri) and rot13: a few bytes of bz2 decode to gigabytes, so they are refused.
    """
    if not isinstance(encoding, str):
        raise TypeError(f"{argument} must be a string, got {type(encoding).__name__}")
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown {argument} {encoding!r}; use {TEXT_ENCODINGS_HINT}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(
            f"{argument} {encoding!r} is not a text encoding; use {TEXT_ENCODINGS_HINT}"
        )
    return encoding


def encode(content: object, encoding: str) -> bytes:
    if not isinstance(content, str):
        raise TypeError(f"content must be a string, got {type(content).__name__}")
    return content.encode(text_encoding(encoding))


def whole_number(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{argument} must be a whole number >= 0, got {value!r}")
    return value


def refuse_existing(place: Place, destination: str, overwrite: bool) -> None:
    if place.lstat() is not None and not overwrite:
        raise FileExistsError(
            errno.EEXIST, "destination exists; pass overwrite: true to replace it", destination
        )


def kind(info: os.stat_result) -> str:
    mode = info.st_mode
    if stat_module.S_ISLNK(mode):
        return "link"
    if stat_module.S_ISDIR(mode):
        return "directory"
    if stat_module.S_ISREG(mode):
        return "file"
    return "other"


def describe(shown: str, info: os.stat_result) -> dict[str, JSON]:
    """Path (as results show it), type, size, modification time and permissions."""
    return {
        "path": shown,
        "type": kind(info),
        "size": info.st_size,
        "modified": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(),
        "mode": format(stat_module.S_IMODE(info.st_mode), "o"),
    }


def open_file(place: Place, flags: int, path: str) -> int:
    """Open the regular file at `place` (never through a link, never waiting on a FIFO);
    IsADirectoryError naming `path` for a directory, OSError for anything else."""
    if place.is_root:
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    fd = place.open(flags | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat_module.S_ISREG(mode):
        os.close(fd)
        if stat_module.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd
