"""The files root holds against its own handlers racing each other.

A relative link keeps its text when it moves: `../../outside/secret.txt` leads to a file inside
the root from root/park/deep, and outside from root/big. So `files.move` can bring a link that
leads outside into a directory while another task copies from it, writes into it or reads
through it. The tests make the race happen at the worst moment on
purpose (a hook on os.scandir that runs the other handler while the copy lists a directory), or
run the handlers against each other for a bounded number of rounds, and check that no byte from
outside the root was read into it and no byte outside was written.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.handlers import HandlerPolicy, resolve_handler
from conveyor.handlers.root import OutsideRootError

SECRET = "secret outside the root"
INSIDE = "inside the root"
ROUNDS = 300


@dataclass
class Tree:
    root: Path
    outside: Path

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return resolve_handler(name, HandlerPolicy(files_root=str(self.root)))(*args, **kwargs)

    def leaked(self, under: str = ".") -> list[Path]:
        """Regular files in the root that hold the secret (a copied link is no copy of it)."""
        return [
            p
            for p in (self.root / under).rglob("*")
            if p.is_file() and not p.is_symlink() and SECRET in p.read_text(errors="replace")
        ]

    def outside_intact(self) -> bool:
        names = sorted(p.name for p in self.outside.iterdir())
        return names == ["secret.txt"] and (self.outside / "secret.txt").read_text() == SECRET


LINK_TEXT = "../../outside/secret.txt"
"""From root/park/deep: root/outside/secret.txt, inside. From root/big: the secret, outside."""


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "big").mkdir(parents=True)
    for i in range(50):
        (root / "big" / f"f{i:02}.txt").write_text(f"file {i}\n")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(INSIDE)  # where the link leads while parked
    (root / "park" / "deep").mkdir(parents=True)
    (root / "park" / "deep" / "zz_link").symlink_to(LINK_TEXT)
    return Tree(root, outside)


class _Listing:
    """What os.scandir returns, over entries listed beforehand."""

    def __init__(self, entries: list[os.DirEntry[Any]]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> Iterator[os.DirEntry[Any]]:
        return self._entries

    def __next__(self) -> os.DirEntry[Any]:
        return next(self._entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def on_first_listing(
    monkeypatch: pytest.MonkeyPatch, directory: Path, action: Callable[[], None], *, before: bool
) -> Iterator[list[bool]]:
    """Run `action` the first time anything lists `directory` (by path or by descriptor):
    before the listing is read, or just after it."""
    wanted = (directory.stat().st_dev, directory.stat().st_ino)
    real = os.scandir
    fired: list[bool] = []

    def scandir(path: Any = ".") -> Any:
        try:
            info = os.stat(path)
        except (OSError, TypeError):
            return real(path)
        if fired or (info.st_dev, info.st_ino) != wanted:
            return real(path)
        fired.append(True)
        if before:
            action()
            return real(path)
        with real(path) as listing:
            entries = list(listing)
        action()
        return _Listing(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    yield fired


def test_a_link_moved_in_while_a_copy_lists_the_source_is_never_read(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    def move_the_link_in() -> None:
        tree.call("files.move", "park/deep/zz_link", "big/zz_link")

    assert tree.call("files.read", "park/deep/zz_link")["content"] == INSIDE
    with on_first_listing(monkeypatch, tree.root / "big", move_the_link_in, before=False) as fired:
        tree.call("files.copy", "big", "copy")
    assert fired, "the race was staged"
    assert tree.leaked() == [], "a file outside the root was read into it"
    assert len([p for p in (tree.root / "copy").iterdir() if p.name.startswith("f")]) == 50
    assert tree.outside_intact()


def test_a_link_in_a_copied_tree_is_copied_as_a_link(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    def move_the_link_in() -> None:
        tree.call("files.move", "park/deep/zz_link", "big/zz_link")

    with on_first_listing(monkeypatch, tree.root / "big", move_the_link_in, before=True) as fired:
        tree.call("files.copy", "big", "copy")
    assert fired
    copied = tree.root / "copy" / "zz_link"
    assert copied.is_symlink() and os.readlink(copied) == LINK_TEXT
    assert tree.leaked() == [] and tree.outside_intact()
    with pytest.raises(OutsideRootError):
        tree.call("files.read", "copy/zz_link")  # and using it is refused, as for any link


def test_copying_over_a_tree_never_writes_through_its_links(tree: Tree) -> None:
    (tree.root / "dest").mkdir()
    (tree.root / "dest" / "f00.txt").symlink_to(LINK_TEXT)
    tree.call("files.copy", "big", "dest", overwrite=True)
    assert tree.outside_intact(), "a file outside the root was written"
    replaced = tree.root / "dest" / "f00.txt"
    assert not replaced.is_symlink() and replaced.read_text() == "file 0\n"


def test_a_link_moved_into_the_destination_during_a_copy_is_not_written_through(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree.root / "dest").mkdir()
    (tree.root / "park" / "deep" / "f49.txt").symlink_to(LINK_TEXT)

    def move_the_link_into_the_destination() -> None:
        tree.call("files.move", "park/deep/f49.txt", "dest/f49.txt")

    with on_first_listing(
        monkeypatch, tree.root / "big", move_the_link_into_the_destination, before=False
    ) as fired:
        tree.call("files.copy", "big", "dest", overwrite=True)
    assert fired and tree.outside_intact()
    assert (tree.root / "dest" / "f49.txt").read_text() == "file 49\n"


def run_against_each_other(
    first: Callable[[int], None], second: Callable[[int], None], rounds: int = ROUNDS
) -> None:
    """Run first(i) and second(i) for i in range(rounds), in two threads at once."""
    errors: list[BaseException] = []

    def loop(step: Callable[[int], None]) -> None:
        try:
            for i in range(rounds):
                step(i)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(step,)) for step in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_copy_and_move_racing_never_read_or_write_outside(tree: Tree) -> None:
    def mover(i: int) -> None:
        (tree.root / "park" / "deep" / f"zz{i}").symlink_to(LINK_TEXT)  # set up, not raced
        tree.call("files.move", f"park/deep/zz{i}", f"big/zz{i}")

    def copier(i: int) -> None:
        with contextlib.suppress(OutsideRootError):
            tree.call("files.copy", "big", "copy", overwrite=True)
        assert tree.leaked("copy") == [], f"round {i}: the secret was copied into the root"

    run_against_each_other(mover, copier, rounds=40)
    assert tree.leaked() == [] and tree.outside_intact()


@pytest.fixture
def swapped(tree: Tree) -> Tree:
    """docs/sub is a real directory; park/deep/sub{i} are links that lead to a directory inside
    where they are, and, moved to docs/sub, to the directory outside (../../outside)."""
    (tree.root / "docs" / "sub").mkdir(parents=True)
    (tree.root / "docs" / "sub" / "secret.txt").write_text(INSIDE)
    for i in range(ROUNDS):
        (tree.root / "park" / "deep" / f"sub{i}").symlink_to("../../outside")
    (tree.root / "hold").mkdir()
    return tree


def swap_directory_for_link(tree: Tree, i: int) -> None:
    """With the handlers, put a link that leads outside where docs/sub was; then put it back."""
    tree.call("files.move", "docs/sub", "hold/sub")
    tree.call("files.move", f"park/deep/sub{i}", "docs/sub")
    os.unlink(tree.root / "docs" / "sub")  # not raced: the next round starts as this one did
    tree.call("files.move", "hold/sub", "docs/sub")


def test_reading_while_a_directory_is_swapped_for_a_link_never_reads_outside(
    swapped: Tree,
) -> None:
    def reader(i: int) -> None:
        try:
            content = swapped.call("files.read", "docs/sub/secret.txt")["content"]
        except (OutsideRootError, FileNotFoundError):
            return
        assert content == INSIDE, f"round {i}: read {content!r}"

    run_against_each_other(lambda i: swap_directory_for_link(swapped, i), reader)


def test_writing_while_a_directory_is_swapped_for_a_link_never_writes_outside(
    swapped: Tree,
) -> None:
    def writer(i: int) -> None:
        with contextlib.suppress(OutsideRootError, FileNotFoundError):
            swapped.call("files.write", "docs/sub/secret.txt", f"written {i}")

    run_against_each_other(lambda i: swap_directory_for_link(swapped, i), writer)
    assert swapped.outside_intact()
