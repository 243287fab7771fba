"""Folder handlers: `files.mkdir`, `files.rmdir`, `files.list`, `files.copy` and `files.move`,
inside the files root, under the same rules as the file handlers (see `files.py` and `root.py`).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
from collections.abc import Callable, Iterator

from conveyor.core.types import JSON
from conveyor.handlers.fsutil import as_given, describe, refuse_existing, whole_number
from conveyor.handlers.root import FilesRoot, OutsideRootError

DEFAULT_MAX_ENTRIES = 1000


def mkdir(root: FilesRoot, /, path: str, *, parents: bool = False, exist_ok: bool = False) -> JSON:
    """Create the directory `path`.

    `parents: true` creates missing parent directories too; `exist_ok: true` makes an existing
    directory no error. Result: `{"path": ..., "created": false if it already existed}`.
    """
    target = root.resolve(path)
    with as_given(path):
        try:
            if parents:
                os.makedirs(target)
            else:
                os.mkdir(target)
        except FileExistsError:
            if not exist_ok or not os.path.isdir(target):
                raise
            return {"path": root.relative(target), "created": False}
    return {"path": root.relative(target), "created": True}


def rmdir(
    root: FilesRoot, /, path: str, *, recursive: bool = False, missing_ok: bool = False
) -> JSON:
    """Remove the directory `path`.

    Without `recursive: true` the directory must be empty. With it, everything inside goes too;
    links inside are removed as links, never followed. The root itself is never removed.
    `missing_ok: true` makes a missing directory no error.
    Result: `{"path": ..., "deleted": false if it was already missing}`.
    """
    target = root.resolve(path)
    if root.is_root(target):
        raise PermissionError(errno.EPERM, "refusing to remove the files root itself", path)
    try:
        with as_given(path):
            if recursive and os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                try:
                    os.rmdir(target)
                except OSError as exc:
                    if exc.errno != errno.ENOTEMPTY:
                        raise
                    raise OSError(
                        exc.errno,
                        "directory not empty; pass recursive: true to remove it all",
                        path,
                    ) from None
    except FileNotFoundError:
        if not missing_ok:
            raise
        return {"path": root.relative(target), "deleted": False}
    return {"path": root.relative(target), "deleted": True}


def list_entries(
    root: FilesRoot,
    /,
    path: str = ".",
    *,
    pattern: str | None = None,
    recursive: bool = False,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> JSON:
    """List the directory `path` (default: the root), sorted by path.

    Arguments: `pattern`: keep only names that match it (`*.txt`; shell-style wildcards);
    `recursive`: descend into subdirectories (not into links to directories); `max_entries`
    (default 1000). Result: `{"path": ..., "entries": [{"name", "path", "type": "file",
    "directory", "link" or "other", "size", "modified"}], "truncated": bool}`; a link's entry
    describes the link itself.
    """
    target = root.resolve(path)
    limit = whole_number(max_entries, "max_entries")
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string, got {type(pattern).__name__}")
    entries: list[JSON] = []
    truncated = False
    with as_given(path):
        for entry in _walk(target, recursive):
            if pattern is not None and not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            if len(entries) == limit:
                truncated = True
                break
            entries.append({"name": entry.name, **describe(root, entry.path, follow=False)})
    return {"path": root.relative(target), "entries": entries, "truncated": truncated}


def copy(root: FilesRoot, /, source: str, destination: str, *, overwrite: bool = False) -> JSON:
    """Copy the file or directory `source` to `destination` (the new path, not a folder to copy
    into).

    A directory is copied with everything in it. Links inside a copied directory are copied as
    what they point to; a directory holding a link to another directory, or a link leading
    outside the root, is refused before anything is copied. An existing `destination` is an
    error unless `overwrite` is true: then a file replaces it, or a directory's files are merged
    into it. Result: `{"source": ..., "destination": ..., "type": "file" or "directory"}`.
    """
    src = root.resolve(source, argument="source")
    dst = root.resolve(destination, argument="destination")
    with as_given(source):
        is_dir = os.path.isdir(src)
        if not is_dir:
            os.stat(src)  # a missing source says so, naming the source
    _refuse_nesting(os.path.realpath(src), dst, source, destination, "copy")
    refuse_existing(dst, destination, overwrite)
    if not is_dir and os.path.isdir(dst):
        raise IsADirectoryError(errno.EISDIR, "destination is a directory", destination)
    with as_given(destination):
        if is_dir:
            _check_tree_links(root, src, source)
            shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=overwrite)
        else:
            shutil.copy2(src, dst)
    kind = "directory" if is_dir else "file"
    return {"source": root.relative(src), "destination": root.relative(dst), "type": kind}


def move(root: FilesRoot, /, source: str, destination: str, *, overwrite: bool = False) -> JSON:
    """Move (rename) the file, directory or link `source` to `destination`, the new path.

    A link is moved as a link. An existing `destination` is an error unless `overwrite` is true:
    then a file replaces it, or a directory replaces an empty directory. Moving the root itself,
    or a directory into itself, is refused. Result: `{"source": ..., "destination": ...}`.
    """
    src = root.resolve(source, argument="source")
    dst = root.resolve(destination, argument="destination")
    if root.is_root(src):
        raise PermissionError(errno.EPERM, "refusing to move the files root itself", source)
    with as_given(source):
        os.lstat(src)
    # A link moves as a link; a directory must not move into itself.
    _refuse_nesting(
        src if os.path.islink(src) else os.path.realpath(src), dst, source, destination, "move"
    )
    refuse_existing(dst, destination, overwrite)
    with as_given(source):
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system inside the root: copy, then remove the original.
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=overwrite)
                shutil.rmtree(src)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
                os.unlink(src)
    return {"source": root.relative(src), "destination": root.relative(dst)}


HANDLERS: dict[str, Callable[..., JSON]] = {
    "files.mkdir": mkdir,
    "files.rmdir": rmdir,
    "files.list": list_entries,
    "files.copy": copy,
    "files.move": move,
}
"""The folder handlers by registered name; each takes the FilesRoot as its first argument."""


def _refuse_nesting(src: str, dst: str, source: str, destination: str, verb: str) -> None:
    """Refuse a destination that is the source or lies inside it (`src` as the operation sees
    it: the real path, or the link itself when a link is moved)."""
    if dst == src:
        raise ValueError(f"cannot {verb} {source!r} onto itself")
    if os.path.commonpath([src, dst]) == src:
        raise ValueError(f"cannot {verb} {source!r} into itself ({destination!r})")


def _check_tree_links(root: FilesRoot, directory: str, given: str) -> None:
    """Refuse to copy a tree holding a link that leads outside, or a link to a directory (which
    could loop back to its own ancestor)."""
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                continue
            shown = os.path.join(given, os.path.relpath(full, directory))
            if not root.contains(os.path.realpath(full)):
                raise OutsideRootError(
                    f"source {given!r} holds a link that leads outside the files root: {shown!r}"
                )
            if os.path.isdir(full):
                raise ValueError(
                    f"source {given!r} holds a link to a directory ({shown!r}); "
                    "copying such a tree is not supported"
                )


def _walk(directory: str, recursive: bool) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        yield entry
        if recursive and entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, recursive)
