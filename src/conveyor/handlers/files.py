"""File handlers: `files.write`, `files.append`, `files.read`, `files.create`, `files.delete` and
`files.stat`, inside the files root. The folder handlers are in `folders.py`.

They run only on a worker started with `--files-root DIR` (`conveyor run` uses the current
directory unless told otherwise), and only inside DIR: every path argument is relative to it, and
one that leads outside (with `..`, an absolute path or a symbolic link) is refused with
OutsideRootError. `conveyor.handlers.root` says exactly how paths and links are checked.

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
from collections.abc import Callable

from conveyor.core.types import JSON
from conveyor.handlers.fsutil import as_given, describe, encode, text_encoding, whole_number
from conveyor.handlers.root import FilesRoot

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
    target = root.resolve(path)
    data = encode(content, encoding)
    with as_given(path):
        if parents:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as file:
            file.write(data)
    return {"path": root.relative(target), "bytes": len(data)}


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
    target = root.resolve(path)
    data = encode(content, encoding)
    with as_given(path):
        if parents:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "ab") as file:
            file.write(data)
            size = file.tell()
    return {"path": root.relative(target), "bytes": len(data), "size": size}


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
    target = root.resolve(path)
    limit = whole_number(max_bytes, "max_bytes")
    decoder = codecs.getincrementaldecoder(text_encoding(encoding))()
    with as_given(path), open(target, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        data = file.read(limit + 1)
    truncated = len(data) > limit
    # A cut may fall inside a multi-byte character: leave that character out instead of failing.
    content = decoder.decode(data[:limit], final=not truncated)
    return {"path": root.relative(target), "content": content, "size": size, "truncated": truncated}


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
    target = root.resolve(path)
    text_encoding(encoding)  # checked even when there is no content to encode
    data = b"" if content is None else encode(content, encoding)
    with as_given(path):
        if parents:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            with open(target, "xb") as file:
                file.write(data)
            created = True
        except FileExistsError:
            if not exist_ok or content is not None:
                raise
            os.utime(target)
            created = False
        size = os.stat(target).st_size
    return {"path": root.relative(target), "created": created, "size": size}


def delete(root: FilesRoot, /, path: str, *, missing_ok: bool = False) -> JSON:
    """Delete the file (or link) `path`; a link is removed, not what it points to.

    A directory is refused: use `files.rmdir`. `missing_ok: true` makes a missing file no error.
    Result: `{"path": ..., "deleted": false if it was already missing}`.
    """
    target = root.resolve(path)
    if os.path.isdir(target) and not os.path.islink(target):
        raise IsADirectoryError(errno.EISDIR, "is a directory; use files.rmdir", path)
    try:
        with as_given(path):
            os.unlink(target)
    except FileNotFoundError:
        if not missing_ok:
            raise
        return {"path": root.relative(target), "deleted": False}
    return {"path": root.relative(target), "deleted": True}


def stat(root: FilesRoot, /, path: str) -> JSON:
    """Describe `path`: whether it exists, and if so its type, size and modification time.

    A link is described by what it points to, with `"link": true`. A missing path is no error.
    Result: `{"path", "exists", "type", "size", "modified" (ISO 8601, UTC), "mode" (octal
    permissions such as "644"), "link"}`, or `{"path", "exists": false}`.
    """
    target = root.resolve(path)
    if not os.path.exists(target):  # missing, or a link to something missing
        return {"path": root.relative(target), "exists": False}
    with as_given(path):
        described = describe(root, target, follow=True)
    return {"exists": True, **described, "link": os.path.islink(target)}


HANDLERS: dict[str, Callable[..., JSON]] = {
    "files.write": write,
    "files.append": append,
    "files.read": read,
    "files.create": create,
    "files.delete": delete,
    "files.stat": stat,
}
"""The file handlers by registered name; each takes the FilesRoot as its first argument."""
