"""Folder handlers: `files.mkdir`, `files.rmdir`, `files.list`, `files.copy` and `files.move`,
inside the files root, under the same rules as the file handlers (see `files.py` and `root.py`).
Trees are listed, copied and removed by file descriptor (`fstree.py`): links inside them are never
followed.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat as stat_module
from collections.abc import Callable

from conveyor.core.types import JSON
from conveyor.handlers import fstree
from conveyor.handlers.fsutil import as_given, describe, refuse_existing, whole_number
from conveyor.handlers.root import FilesRoot, Place

DEFAULT_MAX_ENTRIES = 1000


def mkdir(root: FilesRoot, /, path: str, *, parents: bool = False, exist_ok: bool = False) -> JSON:
    """Create the directory `path`.

    `parents: true` creates missing parent directories too; `exist_ok: true` makes an existing
    directory no error. Result: `{"path": ..., "created": false if it already existed}`.
    """
    with as_given(path), root.locate(path, parents=parents) as place:
        try:
            if place.is_root:
                raise FileExistsError(errno.EEXIST, "is the files root", path)
            os.mkdir(place.name, dir_fd=place.dir_fd)
        except FileExistsError:
            info = place.lstat()
            if not exist_ok or info is None or not stat_module.S_ISDIR(info.st_mode):
                raise
            return {"path": place.shown, "created": False}
    return {"path": place.shown, "created": True}


def rmdir(
    root: FilesRoot, /, path: str, *, recursive: bool = False, missing_ok: bool = False
) -> JSON:
    """Remove the directory `path`.

    Without `recursive: true` the directory must be empty. With it, everything inside goes too;
    links inside are removed as links, never followed. The root itself is never removed.
    `missing_ok: true` makes a missing directory no error.
    Result: `{"path": ..., "deleted": false if it was already missing}`.
    """
    with as_given(path), root.locate(path, follow=False) as place:
        if place.is_root:
            raise PermissionError(errno.EPERM, "refusing to remove the files root itself", path)
        info = place.lstat()
        try:
            if info is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            if not stat_module.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            if recursive:
                fstree.remove_tree(place.dir_fd, place.name)
            else:
                _remove_empty(place, path)
        except FileNotFoundError:
            if not missing_ok:
                raise
            return {"path": place.shown, "deleted": False}
    return {"path": place.shown, "deleted": True}


def _remove_empty(place: Place, path: str) -> None:
    try:
        os.rmdir(place.name, dir_fd=place.dir_fd)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        raise OSError(
            exc.errno, "directory not empty; pass recursive: true to remove it all", path
        ) from None


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
    limit = whole_number(max_entries, "max_entries")
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string, got {type(pattern).__name__}")
    entries: list[JSON] = []
    truncated = False
    with as_given(path), root.locate(path) as place:
        directory = place.open_directory()
        try:
            for name, shown, info in fstree.walk(directory, place.shown, recursive):
                if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
                    continue
                if len(entries) == limit:
                    truncated = True
                    break
                entries.append({"name": name, **describe(shown, info)})
        finally:
            os.close(directory)
    return {"path": place.shown, "entries": entries, "truncated": truncated}


def copy(root: FilesRoot, /, source: str, destination: str, *, overwrite: bool = False) -> JSON:
    """Copy the file or directory `source` to `destination` (the new path, not a folder to copy
    into).

    A directory is copied with everything in it; links inside it are copied as links (the same
    text), never followed. A `source` or `destination` that is itself a link is found through,
    inside the root, as any path. An existing `destination` is an error unless `overwrite` is
    true: then a file replaces it, or a directory's files are merged into it (a link in the way
    is replaced, never written through). Result: `{"source": ..., "destination": ..., "type":
    "file" or "directory"}`.
    """
    with contextlib.ExitStack() as places:
        src, dst = _locate_both(places, root, source, destination, follow=True)
        info = src.lstat()
        if info is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source)
        is_dir = stat_module.S_ISDIR(info.st_mode)
        _refuse_nesting(src, dst, source, destination, "copy", is_dir=is_dir)
        refuse_existing(dst, destination, overwrite)
        target = dst.lstat()
        if not is_dir and target is not None and stat_module.S_ISDIR(target.st_mode):
            raise IsADirectoryError(errno.EISDIR, "destination is a directory", destination)
        with as_given(destination):
            if is_dir:
                _copy_directory(src, dst, overwrite)
            else:
                fstree.copy_file(src.dir_fd, src.name, dst.dir_fd, dst.name, overwrite=overwrite)
    kind = "directory" if is_dir else "file"
    return {"source": src.shown, "destination": dst.shown, "type": kind}


def _locate_both(
    places: contextlib.ExitStack, root: FilesRoot, source: str, destination: str, *, follow: bool
) -> tuple[Place, Place]:
    """The places of `source` and `destination`, open until `places` closes; errors name the
    argument they come from."""
    with as_given(source):
        src = places.enter_context(root.locate(source, argument="source", follow=follow))
    with as_given(destination):
        dst = places.enter_context(root.locate(destination, argument="destination", follow=follow))
    return src, dst


def _copy_directory(src: Place, dst: Place, overwrite: bool) -> None:
    source = src.open_directory()
    try:
        target = fstree.make_directory(dst.dir_fd, dst.name, overwrite=overwrite)
        try:
            fstree.copy_tree(source, target, overwrite=overwrite, made=set())
        finally:
            os.close(target)
    finally:
        os.close(source)


def move(root: FilesRoot, /, source: str, destination: str, *, overwrite: bool = False) -> JSON:
    """Move (rename) the file, directory or link `source` to `destination`, the new path.

    A link is moved as a link, wherever it points. An existing `destination` is an error unless
    `overwrite` is true: then a file replaces it, or a directory replaces an empty directory.
    Moving the root itself, or a directory into itself, is refused. Result: `{"source": ...,
    "destination": ...}`.
    """
    with contextlib.ExitStack() as places:
        src, dst = _locate_both(places, root, source, destination, follow=False)
        if src.is_root:
            raise PermissionError(errno.EPERM, "refusing to move the files root itself", source)
        info = src.lstat()
        if info is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source)
        is_dir = stat_module.S_ISDIR(info.st_mode)
        _refuse_nesting(src, dst, source, destination, "move", is_dir=is_dir)
        refuse_existing(dst, destination, overwrite)
        with as_given(source):
            try:
                os.replace(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _move_across(src, dst, info, overwrite)
    return {"source": src.shown, "destination": dst.shown}


def _move_across(src: Place, dst: Place, info: os.stat_result, overwrite: bool) -> None:
    """Another file system inside the root: copy, then remove the original."""
    if stat_module.S_ISLNK(info.st_mode):
        text = os.readlink(src.name, dir_fd=src.dir_fd)
        fstree.copy_link(text, dst.dir_fd, dst.name, overwrite=overwrite)
        os.unlink(src.name, dir_fd=src.dir_fd)
    elif stat_module.S_ISDIR(info.st_mode):
        _copy_directory(src, dst, overwrite)
        fstree.remove_tree(src.dir_fd, src.name)
    else:
        fstree.copy_file(src.dir_fd, src.name, dst.dir_fd, dst.name, overwrite=overwrite)
        os.unlink(src.name, dir_fd=src.dir_fd)


HANDLERS: dict[str, Callable[..., JSON]] = {
    "files.mkdir": mkdir,
    "files.rmdir": rmdir,
    "files.list": list_entries,
    "files.copy": copy,
    "files.move": move,
}
"""The folder handlers by registered name; each takes the FilesRoot as its first argument."""


def _refuse_nesting(
    src: Place, dst: Place, source: str, destination: str, verb: str, *, is_dir: bool
) -> None:
    """Refuse a destination that is the source, or (for a directory) lies inside it."""
    identity = src.identity()
    if identity is not None and identity == dst.identity():
        raise ValueError(f"cannot {verb} {source!r} onto itself")
    if is_dir and identity in dst.directories():
        raise ValueError(f"cannot {verb} {source!r} into itself ({destination!r})")
