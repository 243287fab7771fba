"""Files and directory trees inside the files root, handled by file descriptor.

Every function here takes directories that are already open and names inside them, so nothing it
does can be led elsewhere by a link or a rename made meanwhile: entries are opened with
`O_NOFOLLOW`, directories with `O_DIRECTORY | O_NOFOLLOW`, and a link is read as a link
(`readlink`), never through. A copied link is copied as a link, with the same text.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator

from conveyor.handlers.root import DIRECTORY_FLAGS

_CHUNK_BYTES = 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ATTEMPTS = 5  # an entry replaced under a copy this many times in a row is an error


def names(directory: int) -> list[str]:
    """The entries of an open directory, sorted."""
    with os.scandir(directory) as scan:
        return sorted(entry.name for entry in scan)


def walk(directory: int, shown: str, recursive: bool) -> Iterator[tuple[str, str, os.stat_result]]:
    """(name, path as results show it, stat of the entry itself) for each entry, sorted; with
    `recursive`, each directory's entries follow it (links to directories are not entered)."""
    for name in names(directory):
        path = name if shown == "." else f"{shown}/{name}"
        try:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed since it was listed
        yield name, path, info
        if recursive and stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, DIRECTORY_FLAGS, dir_fd=directory)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed, or replaced by a link or a file, since it was listed
            try:
                yield from walk(child, path, recursive)
            finally:
                os.close(child)


def create_file(directory: int, name: str, *, overwrite: bool) -> int:
    """Open `name` for writing, new or (with `overwrite`) truncated. A link in its place is
    replaced by the file when overwriting, never written through; FileExistsError otherwise."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(
            name, flags | (os.O_TRUNC if overwrite else os.O_EXCL), 0o666, dir_fd=directory
        )
    except OSError as exc:
        if not overwrite or exc.errno != errno.ELOOP:
            raise
    os.unlink(name, dir_fd=directory)
    return os.open(name, flags | os.O_EXCL, 0o666, dir_fd=directory)


def copy_data(source: int, target: int, info: os.stat_result) -> None:
    """Copy the bytes, permissions and times of the open file `source` to `target`."""
    while chunk := os.read(source, _CHUNK_BYTES):
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view) :]
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def copy_file(src_dir: int, src_name: str, dst_dir: int, dst_name: str, *, overwrite: bool) -> None:
    """Copy the regular file `src_name` (IsADirectoryError for a directory, OSError(ELOOP) for a
    link) to `dst_name`."""
    source = os.open(src_name, _READ_FLAGS, dir_fd=src_dir)
    try:
        info = os.fstat(source)
        _check_copyable(info, src_name)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", src_name)
        target = create_file(dst_dir, dst_name, overwrite=overwrite)
        try:
            copy_data(source, target, info)
        finally:
            os.close(target)
    finally:
        os.close(source)


def make_directory(directory: int, name: str, *, overwrite: bool) -> int:
    """Create the directory `name` (or, with `overwrite`, take the one there) and open it. A
    link in its place is replaced when overwriting, never entered."""
    try:
        os.mkdir(name, 0o700, dir_fd=directory)
    except FileExistsError:
        if not overwrite:
            raise
    try:
        return os.open(name, DIRECTORY_FLAGS, dir_fd=directory)
    except NotADirectoryError:
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if not overwrite or not stat.S_ISLNK(info.st_mode):
            raise
    os.unlink(name, dir_fd=directory)
    os.mkdir(name, 0o700, dir_fd=directory)
    return os.open(name, DIRECTORY_FLAGS, dir_fd=directory)


def copy_link(text: str, directory: int, name: str, *, overwrite: bool) -> None:
    """Make the link `name` with `text`, replacing a file or link there when overwriting."""
    try:
        os.symlink(text, name, dir_fd=directory)
        return
    except FileExistsError:
        if not overwrite:
            raise
    info = os.stat(name, dir_fd=directory, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "a directory is where a link is copied", name)
    os.unlink(name, dir_fd=directory)
    os.symlink(text, name, dir_fd=directory)


def copy_tree(source: int, target: int, *, overwrite: bool, made: set[tuple[int, int]]) -> None:
    """Copy what the open directory `source` holds into the open directory `target`.

    `made` holds the (device, inode) of the directories this copy created: one of them met in
    the source (moved there meanwhile) is not copied into itself again.
    """
    info = os.fstat(target)
    made.add((info.st_dev, info.st_ino))
    for name in names(source):
        _copy_entry(source, target, name, overwrite=overwrite, made=made)
    info = os.fstat(source)
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_entry(
    source: int, target: int, name: str, *, overwrite: bool, made: set[tuple[int, int]]
) -> None:
    for _ in range(_ATTEMPTS):
        try:
            entry = os.open(name, _READ_FLAGS, dir_fd=source)
        except FileNotFoundError:
            return  # removed since it was listed
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            try:
                text = os.readlink(name, dir_fd=source)
            except OSError as again:
                if again.errno in (errno.EINVAL, errno.ENOENT):
                    continue  # no longer a link: look again
                raise
            copy_link(text, target, name, overwrite=overwrite)
            return
        try:
            info = os.fstat(entry)
            _check_copyable(info, name)
            if stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in made:
                    return  # this copy's own output, moved into the source meanwhile
                child = make_directory(target, name, overwrite=overwrite)
                try:
                    copy_tree(entry, child, overwrite=overwrite, made=made)
                finally:
                    os.close(child)
            else:
                copy = create_file(target, name, overwrite=overwrite)
                try:
                    copy_data(entry, copy, info)
                finally:
                    os.close(copy)
            return
        finally:
            os.close(entry)
    raise OSError(errno.EAGAIN, "kept changing while it was copied", name)


def _check_copyable(info: os.stat_result, name: str) -> None:
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise OSError(
            errno.EINVAL, "not a regular file, a directory or a link: cannot be copied", name
        )


def remove_tree(directory: int, name: str) -> None:
    """Remove the directory `name` and everything in it; links inside are removed, not followed.

    shutil.rmtree with `dir_fd` works by file descriptor on Linux (`rmtree.avoids_symlink_attacks`)
    and refuses a link as `name`."""
    shutil.rmtree(name, dir_fd=directory)
