"""FilesRoot: the one directory the file handlers may touch, and how every path is found in it.

A worker started with `--files-root DIR` runs the `files.*` handlers (and `sha256(path=...)`)
inside DIR only. Every path argument, sources and destinations alike, is found the same way,
without ever naming a path to the operating system as a string:

- the root is opened as a directory, and each component of the path is opened in turn, relative
  to the directory opened before it (`openat` with `O_DIRECTORY | O_NOFOLLOW`); the operation then
  acts on the last name inside the last directory opened (`dir_fd=`), with `O_NOFOLLOW` or
  `follow_symlinks=False`. A directory that is held open cannot be swapped for a link under the
  operation, so what was found is what is used: there is no check followed by a second lookup;
- a relative path starts at the root; an absolute path is accepted only if it starts with the
  root's own path (or the path the root was given as);
- `..` goes back to the directory it came from, and never above the root;
- a symbolic link met on the way is never followed by the operating system: its text is read
  and found by the same walk, from the directory that holds it (from the root for an absolute
  link, which must name a path under the root). A link whose text leads outside is refused with
  OutsideRootError, and so is a chain of more than 40 links. So a link to somewhere inside the
  root behaves as its target, and a link that leads outside cannot be used to get there;
- `files.delete`, `files.move` and `files.rmdir` act on a link itself when it is the last
  component (removing or renaming the link, wherever it points); `files.stat` says it is a link.

Links are never created from a task's text: the handlers only copy (`files.copy`, as a link) and
move existing ones. A copied or moved relative link keeps its text, so it may point somewhere
else afterwards, even outside; every use finds it again by the walk above.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Open a directory found by name, refusing a link in its place (ENOTDIR)."""

MAX_LINKS = 40
"""Links followed while finding one path, as the kernel allows (ELOOP beyond)."""


class OutsideRootError(PermissionError):
    """A path argument leads outside the files root (through `..`, an absolute path or a link)."""


@dataclass(frozen=True, slots=True)
class FilesRoot:
    """The files root: its real, absolute path, and the path it was given as, if different."""

    path: str
    aliases: tuple[str, ...] = ()
    """Other absolute spellings of the root (such as a link to it) accepted in path arguments."""

    @classmethod
    def at(cls, directory: str) -> FilesRoot:
        """The root at `directory`, which must be an existing directory."""
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"the files root {directory!r} is not an existing directory")
        given = os.path.normpath(os.path.abspath(directory))
        return cls(real, (given,) if given != real else ())

    @contextlib.contextmanager
    def locate(
        self,
        path: object,
        *,
        argument: str = "path",
        follow: bool = True,
        parents: bool = False,
    ) -> Iterator[Place]:
        """Find `path` in the root: the directory that holds it, open, and its name there.

        `follow`: a last component that is a link is found through (to its target inside the
        root); otherwise the place is the link itself. `parents`: create missing directories on
        the way. The directories stay open while the `with` block runs, and are closed after.
        """
        given = _checked_argument(path, argument)
        walk = _Walk(self, given, argument)
        try:
            yield walk.find(self._relative_parts(given, given, argument), follow, parents)
        finally:
            walk.close()

    def _relative_parts(self, text: str, given: str, argument: str) -> list[str]:
        """The components of `text` from the root: an absolute path must start with the root."""
        if not text.startswith("/"):
            return text.split("/")
        parts = text.split("/")
        for prefix in (self.path, *self.aliases):
            prefix_parts = [p for p in prefix.split("/") if p]
            named = [p for p in parts if p and p != "."]
            if named[: len(prefix_parts)] == prefix_parts:
                return named[len(prefix_parts) :] or ["."]
        raise _outside(given, argument)


@dataclass(slots=True)
class Place:
    """One name inside an open directory of the root: what an operation acts on.

    `dir_fd` is the directory that holds the entry, `name` its name there ("." for the root
    itself, which no directory of the root holds). `shown` is the path relative to the root, as
    results show it. The file descriptors belong to the `locate` that made the place.
    """

    dir_fd: int
    name: str
    shown: str
    _stack: list[int] = field(repr=False)

    @property
    def is_root(self) -> bool:
        return self.name == "."

    def lstat(self) -> os.stat_result | None:
        """The entry itself (a link as a link), or None if there is none."""
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open(self, flags: int, mode: int = 0o666) -> int:
        """Open the entry, never through a link (ELOOP if a link is there now)."""
        return os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.dir_fd)

    def open_directory(self) -> int:
        return os.open(self.name, DIRECTORY_FLAGS, dir_fd=self.dir_fd)

    def directories(self) -> list[tuple[int, int]]:
        """(device, inode) of each directory from the root down to the one holding the entry."""
        return [_identity(os.fstat(fd)) for fd in self._stack]

    def identity(self) -> tuple[int, int] | None:
        info = self.lstat()
        return None if info is None else _identity(info)

    def child(self, name: str) -> str:
        """How results show an entry `name` inside this place (a directory)."""
        return name if self.shown == "." else f"{self.shown}/{name}"


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _checked_argument(path: object, argument: str) -> str:
    if not isinstance(path, str):
        raise TypeError(f"{argument} must be a string, got {type(path).__name__}")
    if not path or "\0" in path:
        raise ValueError(f"{argument} must be a non-empty path without NUL characters")
    return path


def _outside(given: str, argument: str) -> OutsideRootError:
    return OutsideRootError(
        f"{argument} {given!r} is outside the files root; "
        "use a path inside it (links that lead outside are refused too)"
    )


class _Walk:
    """Finding one path from the root, one directory file descriptor at a time."""

    def __init__(self, root: FilesRoot, given: str, argument: str) -> None:
        self.root = root
        self.given = given
        self.argument = argument
        self.links = 0
        root_fd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds: list[int] = [root_fd]
        self.names: list[str] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def find(self, parts: list[str], follow: bool, parents: bool) -> Place:
        shown: str | None = None  # results name a followed link as the task named it
        while True:
            *directories, last = parts or ["."]
            if last in ("", ".", ".."):
                directories.append(last)
                last = ""
            self._descend(directories, parents)
            if not last:
                here = self._here()
                here.shown = shown or here.shown
                return here
            shown = shown or self._shown(last)
            if follow:
                target = self._link_text(last)
                if target is not None:
                    parts = self._restart(target)
                    continue
            return Place(self.fds[-1], last, shown, list(self.fds))

    def _descend(self, parts: list[str], parents: bool) -> None:
        pending = list(reversed(parts))  # a stack: a link's text is pushed in front of the rest
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(self.fds) == 1:
                    raise _outside(self.given, self.argument)
                os.close(self.fds.pop())
                self.names.pop()
                continue
            try:
                fd = os.open(part, DIRECTORY_FLAGS, dir_fd=self.fds[-1])
            except FileNotFoundError:
                if not parents:
                    raise self._error(errno.ENOENT) from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=self.fds[-1])
                self._count_link()  # bounds retries if the new directory keeps being replaced
                pending.append(part)
                continue
            except NotADirectoryError:
                target = self._link_text(part)
                if target is not None:
                    pending.extend(reversed(self._restart(target)))
                    continue
                # No link (any more): a file is in the way, or it changed since: look again.
                info = self._lstat(part)
                if info is not None and not stat.S_ISDIR(info.st_mode):
                    raise self._error(errno.ENOTDIR) from None
                self._count_link()
                pending.append(part)
                continue
            self.fds.append(fd)
            self.names.append(part)

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _link_text(self, name: str) -> str | None:
        """The text of the link `name` in the current directory, or None if it is no link."""
        info = self._lstat(name)
        if info is None or not stat.S_ISLNK(info.st_mode):
            return None
        self._count_link()
        try:
            return os.readlink(name, dir_fd=self.fds[-1])
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # replaced meanwhile: look again
                return self._link_text(name)
            raise

    def _restart(self, text: str) -> list[str]:
        """The components of a link's text, to be found from where the link is (or the root)."""
        if not text:
            raise self._error(errno.ENOENT)
        if text.startswith("/"):
            parts = self.root._relative_parts(text, self.given, self.argument)
            while len(self.fds) > 1:
                os.close(self.fds.pop())
                self.names.pop()
            return parts
        return text.split("/")

    def _count_link(self) -> None:
        self.links += 1
        if self.links > MAX_LINKS:
            raise self._error(errno.ELOOP)

    def _here(self) -> Place:
        """The directory the walk stands in, as a name in its parent (or the root itself)."""
        if len(self.fds) == 1:
            return Place(self.fds[0], ".", ".", list(self.fds))
        return Place(self.fds[-2], self.names[-1], "/".join(self.names), self.fds[:-1])

    def _shown(self, name: str) -> str:
        return "/".join([*self.names, name])

    def _error(self, code: int) -> OSError:
        return OSError(code, os.strerror(code), self.given)
