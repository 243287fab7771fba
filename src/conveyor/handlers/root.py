"""FilesRoot: the one directory the file handlers may touch, and the check every path goes through.

A worker started with `--files-root DIR` runs the `files.*` handlers (and `sha256(path=...)`)
inside DIR only. Every path argument, sources and destinations alike, is checked the same way:

- a relative path is taken from the root; an absolute path is accepted only if it lies inside it;
- `..` may be used as long as the result stays inside (`a/../b` is fine, `../b` is not);
- every symbolic link on the way, the last component included, is followed to where it really
  points, and that must be inside the root too. A link to somewhere inside the root behaves as
  its target, as on any file system, except that `files.delete` removes the link, not the target.
  A link to anywhere outside is refused, whatever the operation;
- the operation then runs on the checked path, with its directories resolved, so a link met on
  the way cannot lead it elsewhere.

The handlers never make a new link. Moving a relative link (or a directory holding one) keeps its
text, so it may point somewhere else afterwards, even outside; since every use checks again, such
a link cannot lead a handler outside the root. The check and the operation are two steps: a
process other than Conveyor's handlers that creates links inside the root at the same moment
could slip one in between them. Give the root to Conveyor alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class OutsideRootError(PermissionError):
    """A path argument leads outside the files root (through `..`, an absolute path or a link)."""


@dataclass(frozen=True, slots=True)
class FilesRoot:
    """The real, absolute path of the files root, with symbolic links resolved."""

    path: str

    @classmethod
    def at(cls, directory: str) -> FilesRoot:
        """The root at `directory`, which must be an existing directory."""
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"the files root {directory!r} is not an existing directory")
        return cls(real)

    def resolve(self, path: object, *, argument: str = "path") -> str:
        """The absolute path that `path` means, or OutsideRootError if it leads outside.

        The returned path has every directory resolved; its last component is kept as given
        (after checking where it leads), so that a link can be removed or moved as a link.
        """
        if not isinstance(path, str):
            raise TypeError(f"{argument} must be a string, got {type(path).__name__}")
        if not path or "\0" in path:
            raise ValueError(f"{argument} must be a non-empty path without NUL characters")
        joined = os.path.join(self.path, path)  # an absolute `path` replaces the root here
        head, name = os.path.split(joined)
        if name in ("", ".", ".."):  # `dir/`, `dir/.`, `dir/..`: the directory itself
            target = os.path.realpath(joined)
            self._check(target, path, argument)
            return target
        parent = os.path.realpath(head)
        self._check(parent, path, argument)
        target = os.path.join(parent, name)
        self._check(os.path.realpath(target), path, argument)  # a last component that is a link
        return target

    def relative(self, path: str) -> str:
        """`path` (inside the root) as results show it: relative to the root, '.' for the root."""
        return os.path.relpath(path, self.path)

    def is_root(self, path: str) -> bool:
        return os.path.realpath(path) == self.path

    def contains(self, path: str) -> bool:
        """Whether the real path `path` is the root or inside it."""
        return os.path.commonpath([self.path, path]) == self.path

    def _check(self, real: str, given: str, argument: str) -> None:
        if not self.contains(real):
            raise OutsideRootError(
                f"{argument} {given!r} is outside the files root; "
                "use a path inside it (links that lead outside are refused too)"
            )
