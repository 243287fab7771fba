"""File handlers: `files.write`, `files.append`, `files.read`, `files.create`, `files.delete` and
`files.stat`, inside the files root. The folder handlers are in `folders.py`.

They run only on a worker started with `--files-root DIR` (`conveyor run` uses the current
directory unless told otherwise), and only inside DIR: every path argument is relative to it, and
one that leads outside (with `..`, an absolute path or a symbolic link) is refused with
OutsideRootError. `conveyor.handlers.root` says exactly how paths and links are found: one
directory file descriptor at a time, so that no link or rename made meanwhile can lead an
operation elsewhere.

Results name paths relative to the root, so one task's result can be the next one's argument.
Text is read and written with `encoding` (default UTF-8): a text encoding only, since codecs such
as bz2_codec turn a few bytes into gigabytes. Errors are the usual ones of a file
system (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, ...), with the
path as given in the task.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat as stat_module
from collections.abc import Callable

from conveyor.core.types import JSON
from conveyor.handlers.fsutil import (
    as_given,
    describe,
    encode,
    open_file,
    text_encoding,
    whole_number,
)
from conveyor.handlers.root import FilesRoot, Place

DEFAULT_MAX_READ_BYTES = 1024 * 1024


def write(
    root: FilesRoot,
    /,
    path: str,
    content: str,
    *,
    encoding: str = "utf-8",
    parents: bool = False,
) -> JSON:
    """Write the text `content` to the file `path`, replacing what it held.

    Arguments: `path`; `content` (text); `encoding` (default "utf-8"); `parents`: create missing
    parent directories (default false: a missing parent directory is an error).
    Result: `{"path": ..., "bytes": bytes written}`.
    """
    data = encode(content, encoding)
    with as_given(path), root.locate(path, parents=parents) as place:
        _write(place, os.O_TRUNC, data, path)
    return {"path": place.shown, "bytes": len(data)}


def append(
    root: FilesRoot,
    /,
    path: str,
    content: str,
    *,
    encoding: str = "utf-8",
    parents: bool = False,
) -> JSON:
    """Add the text `content` at the end of the file `path`, creating the file if it is missing.

    Arguments as for `files.write`. Result: `{"path": ..., "bytes": bytes added, "size": the
    file's size after}`.
    """
    data = encode(content, encoding)
    with as_given(path), root.locate(path, parents=parents) as place:
        size = _write(place, os.O_APPEND, data, path)
    return {"path": place.shown, "bytes": len(data), "size": size}


def _write(place: Place, mode: int, data: bytes, path: str) -> int:
    """Write `data` to the file at `place` (created if missing); the file's size after."""
    fd = open_file(place, os.O_WRONLY | os.O_CREAT | mode, path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read(
    root: FilesRoot,
    /,
    path: str,
    *,
    encoding: str = "utf-8",
    max_bytes: int = DEFAULT_MAX_READ_BYTES,
) -> JSON:
    """Read the text of the file `path`.

    Arguments: `path`; `encoding` (default "utf-8"); `max_bytes`: read at most this much
    (default 1 MiB), so a huge file cannot flood the result.
    Result: `{"path": ..., "content": the text, "size": the file's size in bytes, "truncated":
    true if the file holds more than max_bytes}`. Raises UnicodeDecodeError for bytes that are
    not text in `encoding`.
    """
    limit = whole_number(max_bytes, "max_bytes")
    decoder = codecs.getincrementaldecoder(text_encoding(encoding))()
    with as_given(path), root.locate(path) as place:
        fd = open_file(place, os.O_RDONLY, path)
        try:
            size = os.fstat(fd).st_size
            data = read_up_to(fd, limit + 1)
        finally:
            os.close(fd)
    truncated = len(data) > limit
    # A cut may fall inside a multi-byte character: leave that character out instead of failing.
    content = decoder.decode(data[:limit], final=not truncated)
    return {"path": place.shown, "content": content, "size": size, "truncated": truncated}


def read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(left, 1024 * 1024))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def create(
    root: FilesRoot,
    /,
    path: str,
    content: str | None = None,
    *,
    exist_ok: bool = True,
    encoding: str = "utf-8",
    parents: bool = False,
) -> JSON:
    """Create the file `path`, like `touch`.

    A missing file is created, holding `content` if given, else empty. An existing file keeps
    its content and gets a new modification time; with `exist_ok: false` an existing file is an
    error (FileExistsError), and giving `content` for an existing file is always one (use
    `files.write` to replace a file's content). `parents` creates missing parent directories.
    Result: `{"path": ..., "created": whether the file is new, "size": its size}`.
    """
    text_encoding(encoding)  # checked even when there is no content to encode
    data = b"" if content is None else encode(content, encoding)
    with as_given(path), root.locate(path, parents=parents) as place:
        try:
            _write(place, os.O_EXCL, data, path)
            created = True
        except FileExistsError:
            if not exist_ok or content is not None:
                raise
            os.utime(place.name, dir_fd=place.dir_fd, follow_symlinks=False)
            created = False
        info = os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False)
    return {"path": place.shown, "created": created, "size": info.st_size}


def delete(root: FilesRoot, /, path: str, *, missing_ok: bool = False) -> JSON:
    """Delete the file (or link) `path`; a link is removed, not what it points to.

    A directory is refused: use `files.rmdir`. `missing_ok: true` makes a missing file no error.
    Result: `{"path": ..., "deleted": false if it was already missing}`.
    """
    with as_given(path), root.locate(path, follow=False) as place:
        info = None if place.is_root else place.lstat()
        if place.is_root or (info is not None and stat_module.S_ISDIR(info.st_mode)):
            raise IsADirectoryError(errno.EISDIR, "is a directory; use files.rmdir", path)
        try:
            os.unlink(place.name, dir_fd=place.dir_fd)
        except FileNotFoundError:
            if not missing_ok:
                raise
            return {"path": place.shown, "deleted": False}
    return {"path": place.shown, "deleted": True}


def stat(root: FilesRoot, /, path: str) -> JSON:
    """Describe `path`: whether it exists, and if so its type, size and modification time.

    A link is described by what it points to (found inside the root, as any path), with
    `"link": true`; a link that leads outside the root is refused. A missing path, or a link to
    something missing, is no error. Result: `{"path", "exists", "type", "size", "modified" (ISO
    8601, UTC), "mode" (octal permissions such as "644"), "link"}`, or `{"path", "exists":
    false}`.
    """
    with as_given(path), root.locate(path, follow=False) as place:
        own = place.lstat()
        shown = place.shown
    is_link = own is not None and stat_module.S_ISLNK(own.st_mode)
    with as_given(path), root.locate(path) as target:
        info = target.lstat()
    if info is None:
        return {"path": shown, "exists": False}
    return {"exists": True, **describe(shown, info), "link": is_link}


HANDLERS: dict[str, Callable[..., JSON]] = {
    "files.write": write,
    "files.append": append,
    "files.read": read,
    "files.create": create,
    "files.delete": delete,
    "files.stat": stat,
}
"""The file handlers by registered name; each takes the FilesRoot as its first argument."""
