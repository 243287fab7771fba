"""The file handlers: each operation, and every way out of the files root refused.

The handlers are reached through resolve_handler, as a worker's child reaches them, so the
binding of the root is tested too. Each test gets a fresh root, with a sibling directory
`outside` that nothing may touch, and links in the root that point in and out.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import HandlerError
from conveyor.handlers import HandlerPolicy, check_handler, resolve_handler
from conveyor.handlers.registry import FILES_HANDLERS
from conveyor.handlers.root import FilesRoot, OutsideRootError

SECRET = "secret outside the root"


@dataclass
class Tree:
    root: Path
    outside: Path

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        handler = resolve_handler(name, HandlerPolicy(files_root=str(self.root)))
        return handler(*args, **kwargs)

    def snapshot_outside(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.outside)): p.read_text() if p.is_file() else "<dir>"
            for p in sorted(self.outside.rglob("*"))
        }


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "dir" / "inner.txt").write_text(SECRET)
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("hello\n")
    (root / "docs" / "a.txt").write_text("A")
    (root / "docs" / "sub" / "b.txt").write_text("B")
    (root / "link_in_file").symlink_to("notes.txt")
    (root / "link_in_dir").symlink_to("docs", target_is_directory=True)
    (root / "link_out_file").symlink_to(outside / "secret.txt")
    (root / "link_out_dir").symlink_to(outside / "dir", target_is_directory=True)
    (root / "docs" / "link_up").symlink_to("../../outside/secret.txt")  # relative, leads out
    return Tree(root, outside)


# ---- each operation -----------------------------------------------------------------------------


@dataclass
class Case:
    handler: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    """Keys the result must have with these values."""
    after: Callable[[Path], bool] = lambda root: True
    """What must hold in the root afterwards."""


CASES = {
    "write-new": Case(
        "files.write", ("out.txt", "héllo"), result={"path": "out.txt", "bytes": 6},
        after=lambda r: (r / "out.txt").read_text() == "héllo",
    ),
    "write-replaces": Case(
        "files.write", ("notes.txt", "new"), after=lambda r: (r / "notes.txt").read_text() == "new"
    ),
    "write-parents": Case(
        "files.write", ("a/b/c.txt", "x"), {"parents": True}, {"path": "a/b/c.txt"},
        after=lambda r: (r / "a" / "b" / "c.txt").read_text() == "x",
    ),
    "write-absolute-inside": Case(
        "files.write", ("{root}/abs.txt", "x"), result={"path": "abs.txt"},
        after=lambda r: (r / "abs.txt").exists(),
    ),
    "write-dotdot-inside": Case(
        "files.write", ("docs/../dd.txt", "x"), result={"path": "dd.txt"},
        after=lambda r: (r / "dd.txt").exists(),
    ),
    "write-through-inner-link": Case(
        "files.write", ("link_in_file", "via link"), result={"path": "link_in_file"},
        after=lambda r: (r / "notes.txt").read_text() == "via link"
        and (r / "link_in_file").is_symlink(),
    ),
    "append": Case(
        "files.append", ("notes.txt", "more\n"), result={"bytes": 5, "size": 11},
        after=lambda r: (r / "notes.txt").read_text() == "hello\nmore\n",
    ),
    "append-creates": Case(
        "files.append", ("fresh.txt", "1"), result={"size": 1},
        after=lambda r: (r / "fresh.txt").read_text() == "1",
    ),
    "read": Case(
        "files.read", ("notes.txt",),
        result={"path": "notes.txt", "content": "hello\n", "size": 6, "truncated": False},
    ),
    "read-truncated": Case(
        "files.read", ("notes.txt",), {"max_bytes": 3}, {"content": "hel", "truncated": True}
    ),
    "read-through-inner-dir-link": Case(
        "files.read", ("link_in_dir/a.txt",), result={"content": "A", "path": "docs/a.txt"}
    ),
    "create-new-empty": Case(
        "files.create", ("new.txt",), result={"created": True, "size": 0},
        after=lambda r: (r / "new.txt").read_text() == "",
    ),
    "create-with-content": Case(
        "files.create", ("new.txt", "body"), result={"created": True, "size": 4},
        after=lambda r: (r / "new.txt").read_text() == "body",
    ),
    "create-touches-existing": Case(
        "files.create", ("notes.txt",), result={"created": False, "size": 6},
        after=lambda r: (r / "notes.txt").read_text() == "hello\n",
    ),
    "copy-file": Case(
        "files.copy", ("notes.txt", "copy.txt"),
        result={"source": "notes.txt", "destination": "copy.txt", "type": "file"},
        after=lambda r: (r / "copy.txt").read_text() == "hello\n" and (r / "notes.txt").exists(),
    ),
    "copy-directory": Case(
        "files.copy", ("empty", "empty2"), result={"type": "directory"},
        after=lambda r: (r / "empty2").is_dir(),
    ),
    "copy-overwrite": Case(
        "files.copy", ("notes.txt", "docs/a.txt"), {"overwrite": True},
        after=lambda r: (r / "docs" / "a.txt").read_text() == "hello\n",
    ),
    "move-file": Case(
        "files.move", ("notes.txt", "docs/moved.txt"),
        result={"source": "notes.txt", "destination": "docs/moved.txt"},
        after=lambda r: not (r / "notes.txt").exists()
        and (r / "docs" / "moved.txt").read_text() == "hello\n",
    ),
    "move-directory": Case(
        "files.move", ("empty", "docs/empty"), after=lambda r: (r / "docs" / "empty").is_dir()
    ),
    "move-inner-link-moves-the-link": Case(
        "files.move", ("link_in_dir", "docs2"),
        after=lambda r: (r / "docs2").is_symlink() and (r / "docs").is_dir(),
    ),
    "delete-file": Case(
        "files.delete", ("notes.txt",), result={"deleted": True},
        after=lambda r: not (r / "notes.txt").exists(),
    ),
    "delete-missing-ok": Case(
        "files.delete", ("nothing.txt",), {"missing_ok": True}, {"deleted": False}
    ),
    "delete-inner-link-keeps-target": Case(
        "files.delete", ("link_in_file",),
        after=lambda r: not (r / "link_in_file").is_symlink() and (r / "notes.txt").exists(),
    ),
    "stat-file": Case(
        "files.stat", ("notes.txt",),
        result={"exists": True, "type": "file", "size": 6, "link": False},
    ),
    "stat-directory": Case("files.stat", ("docs",), result={"type": "directory"}),
    "stat-inner-link": Case(
        "files.stat", ("link_in_file",), result={"type": "file", "link": True, "size": 6}
    ),
    "stat-missing": Case(
        "files.stat", ("nothing",), result={"path": "nothing", "exists": False}
    ),
    "mkdir": Case(
        "files.mkdir", ("newdir",), result={"path": "newdir", "created": True},
        after=lambda r: (r / "newdir").is_dir(),
    ),
    "mkdir-parents": Case(
        "files.mkdir", ("x/y/z",), {"parents": True}, after=lambda r: (r / "x/y/z").is_dir()
    ),
    "mkdir-exist-ok": Case("files.mkdir", ("docs",), {"exist_ok": True}, {"created": False}),
    "rmdir-empty": Case(
        "files.rmdir", ("empty",), result={"deleted": True},
        after=lambda r: not (r / "empty").exists(),
    ),
    "rmdir-recursive": Case(
        "files.rmdir", ("docs",), {"recursive": True},
        after=lambda r: not (r / "docs").exists(),
    ),
    "rmdir-missing-ok": Case(
        "files.rmdir", ("nothing",), {"missing_ok": True}, {"deleted": False}
    ),
    "sha256-path": Case(
        "sha256", (), {"path": "notes.txt"},
        after=lambda r: True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_operation(tree: Tree, case: Case) -> None:
    before = tree.snapshot_outside()
    args = tuple(
        a.replace("{root}", str(tree.root)) if isinstance(a, str) else a for a in case.args
    )
    result = tree.call(case.handler, *args, **case.kwargs)
    if isinstance(result, dict):
        assert {k: result[k] for k in case.result} == case.result, result
    assert case.after(tree.root)
    assert tree.snapshot_outside() == before, "nothing outside the root may change"


def test_sha256_of_a_file_in_the_root(tree: Tree) -> None:
    assert tree.call("sha256", path="notes.txt") == tree.call("sha256", "hello\n")


def test_list_directory(tree: Tree) -> None:
    listing = tree.call("files.list", "docs")
    assert listing["path"] == "docs" and listing["truncated"] is False
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("a.txt", "file"),
        ("link_up", "link"),
        ("sub", "directory"),
    ]


def test_list_root_recursive_with_pattern_and_limit(tree: Tree) -> None:
    found = tree.call("files.list", recursive=True, pattern="*.txt")
    assert [e["path"] for e in found["entries"]] == ["docs/a.txt", "docs/sub/b.txt", "notes.txt"]
    capped = tree.call("files.list", ".", max_entries=2)
    assert len(capped["entries"]) == 2 and capped["truncated"] is True


def test_list_describes_links_without_following_them(tree: Tree) -> None:
    entries = {e["name"]: e for e in tree.call("files.list")["entries"]}
    assert entries["link_out_dir"]["type"] == "link"
    assert entries["link_out_file"]["type"] == "link"


def test_read_does_not_split_a_character(tree: Tree) -> None:
    (tree.root / "u.txt").write_text("aé", encoding="utf-8")  # 'é' is two bytes
    assert tree.call("files.read", "u.txt", max_bytes=2)["content"] == "a"


def test_stat_reports_time_and_mode(tree: Tree) -> None:
    os.chmod(tree.root / "notes.txt", 0o640)
    stat = tree.call("files.stat", "notes.txt")
    assert stat["mode"] == "640"
    assert stat["modified"].endswith("+00:00")


# ---- errors inside the root ---------------------------------------------------------------------

ERRORS = {
    "read-missing": ("files.read", ("nothing.txt",), {}, FileNotFoundError, "'nothing.txt'"),
    "read-a-directory": ("files.read", ("docs",), {}, IsADirectoryError, "'docs'"),
    "write-missing-parent": ("files.write", ("no/dir/f", "x"), {}, FileNotFoundError, "'no/dir/f'"),
    "write-not-text": ("files.write", ("f", 5), {}, TypeError, "content must be a string"),
    "create-exists-strict": ("files.create", ("notes.txt",), {"exist_ok": False}, FileExistsError, ""),
    "create-exists-with-content": ("files.create", ("notes.txt", "x"), {}, FileExistsError, ""),
    "copy-onto-existing": ("files.copy", ("notes.txt", "docs/a.txt"), {}, FileExistsError, "overwrite"),
    "copy-into-itself": ("files.copy", ("docs", "docs/sub/again"), {}, ValueError, "into itself"),
    "copy-missing": ("files.copy", ("nothing", "x"), {}, FileNotFoundError, "'nothing'"),
    "copy-file-onto-directory": ("files.copy", ("notes.txt", "empty"), {"overwrite": True}, IsADirectoryError, ""),
    "move-onto-existing": ("files.move", ("notes.txt", "docs/a.txt"), {}, FileExistsError, "overwrite"),
    "move-into-itself": ("files.move", ("docs", "docs/sub/again"), {}, ValueError, "into itself"),
    "move-the-root": ("files.move", (".", "elsewhere"), {}, PermissionError, "files root itself"),
    "delete-a-directory": ("files.delete", ("docs",), {}, IsADirectoryError, "files.rmdir"),
    "delete-missing": ("files.delete", ("nothing",), {}, FileNotFoundError, ""),
    "mkdir-exists": ("files.mkdir", ("docs",), {}, FileExistsError, ""),
    "mkdir-exists-as-file": ("files.mkdir", ("notes.txt",), {"exist_ok": True}, FileExistsError, ""),
    "rmdir-not-empty": ("files.rmdir", ("docs",), {}, OSError, "recursive: true"),
    "rmdir-the-root": ("files.rmdir", (".",), {"recursive": True}, PermissionError, "files root itself"),
    "rmdir-a-file": ("files.rmdir", ("notes.txt",), {"recursive": True}, NotADirectoryError, ""),
    "empty-path": ("files.read", ("",), {}, ValueError, "non-empty"),
    "path-not-text": ("files.read", (5,), {}, TypeError, "path must be a string"),
    "nul-in-path": ("files.read", ("a\0b",), {}, ValueError, "NUL"),
    "bad-max-bytes": ("files.read", ("notes.txt",), {"max_bytes": -1}, ValueError, "max_bytes"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("handler", "args", "kwargs", "error", "message"), ERRORS.values(), ids=ERRORS.keys()
)
def test_errors(
    tree: Tree,
    handler: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        tree.call(handler, *args, **kwargs)
    assert message in str(caught.value)
    assert str(tree.root) not in str(caught.value), "errors name paths as the task gave them"


def test_recursive_rmdir_removes_links_not_their_targets(tree: Tree) -> None:
    (tree.root / "docs" / "out").symlink_to(tree.outside / "dir", target_is_directory=True)
    before = tree.snapshot_outside()
    tree.call("files.rmdir", "docs", recursive=True)
    assert not (tree.root / "docs").exists()
    assert tree.snapshot_outside() == before


# ---- every way out is refused -------------------------------------------------------------------

ESCAPES = {
    "dotdot": "../outside/secret.txt",
    "dotdot-deep": "docs/../../outside/secret.txt",
    "absolute-outside": "{outside}/secret.txt",
    "absolute-outside-dir": "{outside}/dir",
    "link-to-outside-file": "link_out_file",
    "link-to-outside-dir": "link_out_dir",
    "through-link-to-outside-dir": "link_out_dir/inner.txt",
    "relative-link-leading-out": "docs/link_up",
    "through-link-then-dotdot": "link_out_dir/../secret.txt",
}

# Each handler with a path argument, and how to call it with `path` in that position.
PATH_CALLS: dict[str, Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "files.write": lambda p: ((p, "pwned"), {}),
    "files.append": lambda p: ((p, "pwned"), {}),
    "files.read": lambda p: ((p,), {}),
    "files.create": lambda p: ((p,), {}),
    "files.copy:source": lambda p: ((p, "stolen"), {}),
    "files.copy:destination": lambda p: (("notes.txt", p), {"overwrite": True}),
    "files.move:source": lambda p: ((p, "stolen"), {}),
    "files.move:destination": lambda p: (("notes.txt", p), {"overwrite": True}),
    "files.delete": lambda p: ((p,), {}),
    "files.list": lambda p: ((p,), {}),
    "files.stat": lambda p: ((p,), {}),
    "files.mkdir": lambda p: ((p,), {"exist_ok": True}),
    "files.rmdir": lambda p: ((p,), {"recursive": True}),
    "sha256": lambda p: ((), {"path": p}),
}


def test_every_file_handler_is_covered() -> None:
    assert {key.partition(":")[0] for key in PATH_CALLS} == FILES_HANDLERS | {"sha256"}


# These act on a link itself when it is the last component: removing, renaming or replacing a
# link that leads outside stays inside the root, so they are no escape (see the test after).
ACTS_ON_THE_LINK = {"files.delete", "files.move:source", "files.move:destination", "files.rmdir"}
LAST_IS_A_LINK = {"link-to-outside-file", "link-to-outside-dir", "relative-link-leading-out"}
ESCAPE_CASES = [
    pytest.param(call, escape, id=f"{call}-{name}")
    for call in PATH_CALLS
    for name, escape in ESCAPES.items()
    if not (call in ACTS_ON_THE_LINK and name in LAST_IS_A_LINK)
]


@pytest.mark.parametrize(("call", "escape"), ESCAPE_CASES)
def test_escapes_are_refused(tree: Tree, call: str, escape: str) -> None:
    path = escape.replace("{outside}", str(tree.outside))
    args, kwargs = PATH_CALLS[call](path)
    before = tree.snapshot_outside()
    root_before = sorted(str(p) for p in tree.root.rglob("*"))
    with pytest.raises(OutsideRootError, match="outside the files root"):
        tree.call(call.partition(":")[0], *args, **kwargs)
    assert tree.snapshot_outside() == before
    assert sorted(str(p) for p in tree.root.rglob("*")) == root_before, "nothing happened"


@pytest.mark.parametrize("link", ["link_out_file", "link_out_dir", "docs/link_up"])
def test_a_link_that_leads_out_can_be_removed_or_moved(tree: Tree, link: str) -> None:
    before = tree.snapshot_outside()
    text = os.readlink(tree.root / link)
    with pytest.raises(NotADirectoryError):
        tree.call("files.rmdir", link, recursive=True)
    tree.call("files.move", link, "moved")
    assert os.readlink(tree.root / "moved") == text, "moved as a link"
    tree.call("files.copy", "notes.txt", "copied.txt")
    tree.call("files.move", "copied.txt", "moved", overwrite=True)  # replaces the link itself
    assert not (tree.root / "moved").is_symlink()
    (tree.root / "again").symlink_to(text)
    assert tree.call("files.delete", "again") == {"path": "again", "deleted": True}
    assert not os.path.lexists(tree.root / "again")
    assert tree.snapshot_outside() == before


def test_copying_a_tree_copies_its_links_as_links(tree: Tree) -> None:
    (tree.root / "docs" / "to_notes").symlink_to("../notes.txt")
    (tree.root / "docs" / "loop").symlink_to("..", target_is_directory=True)
    before = tree.snapshot_outside()
    tree.call("files.copy", "docs", "docs-copy")
    copy = tree.root / "docs-copy"
    assert {p.name: os.readlink(p) for p in copy.iterdir() if p.is_symlink()} == {
        "to_notes": "../notes.txt",
        "loop": "..",
        "link_up": "../../outside/secret.txt",
    }
    assert (copy / "a.txt").read_text() == "A" and (copy / "sub" / "b.txt").read_text() == "B"
    assert tree.snapshot_outside() == before
    # A copied link is found again by every use: this one leads outside from its new place too.
    with pytest.raises(OutsideRootError):
        tree.call("files.read", "docs-copy/link_up")
    assert tree.call("files.read", "docs-copy/to_notes")["content"] == "hello\n"


def test_a_root_that_is_itself_a_link_works(tmp_path: Path, tree: Tree) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree.root, target_is_directory=True)
    handler = resolve_handler("files.read", HandlerPolicy(files_root=str(alias)))
    assert handler("notes.txt")["content"] == "hello\n"
    assert handler(str(alias / "notes.txt"))["content"] == "hello\n"
    with pytest.raises(OutsideRootError):
        handler("link_out_file")


# ---- without a files root -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES_HANDLERS))
def test_file_handlers_are_refused_without_a_root(name: str) -> None:
    with pytest.raises(HandlerError, match="start the worker with --files-root DIR"):
        check_handler(name, HandlerPolicy())
    with pytest.raises(HandlerError, match="--files-root DIR"):
        resolve_handler(name, HandlerPolicy(allow_shell=True, allow_modules=("*",)))


def test_sha256_of_text_needs_no_root_but_a_path_does() -> None:
    sha256 = resolve_handler("sha256", HandlerPolicy())
    assert sha256("abc").startswith("ba7816bf")
    with pytest.raises(ValueError, match="start the worker with --files-root DIR"):
        sha256(path="/etc/hostname")


def test_a_task_cannot_replace_the_bound_root(tree: Tree) -> None:
    handler = resolve_handler("files.read", HandlerPolicy(files_root=str(tree.root)))
    with pytest.raises(TypeError):
        handler("secret.txt", root=str(tree.outside))
    sha256 = resolve_handler("sha256", HandlerPolicy())
    with pytest.raises(TypeError):
        sha256(path="/etc/hostname", root=FilesRoot("/"))


@pytest.mark.parametrize("root", ["relative/dir", 5])
def test_policy_wants_an_absolute_root(root: Any) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        HandlerPolicy(files_root=root)


def test_a_missing_root_is_a_clear_handler_error(tmp_path: Path) -> None:
    with pytest.raises(HandlerError, match="not an existing directory"):
        resolve_handler("files.read", HandlerPolicy(files_root=str(tmp_path / "gone")))


def test_a_moved_relative_link_that_now_leads_out_is_refused_at_use(tree: Tree) -> None:
    (tree.root / "docs" / "sub" / "up").symlink_to("../../notes.txt")
    assert tree.call("files.read", "docs/sub/up")["content"] == "hello\n"
    tree.call("files.move", "docs/sub/up", "up")  # the same text, one level higher: outside
    with pytest.raises(OutsideRootError):
        tree.call("files.read", "up")


# ---- how links are found: by the root's own walk, never by the operating system ------------------


def test_dotdot_after_a_link_goes_back_from_where_the_link_led(tree: Tree) -> None:
    # link_in_dir leads to docs: link_in_dir/.. is the root, as the kernel would have it.
    assert tree.call("files.read", "link_in_dir/../notes.txt")["content"] == "hello\n"
    assert tree.call("files.read", "link_in_dir/sub/../a.txt")["path"] == "docs/a.txt"


def test_an_absolute_link_inside_the_root_is_followed_within_it(tree: Tree) -> None:
    (tree.root / "abs_in").symlink_to(tree.root / "docs" / "a.txt")
    assert tree.call("files.read", "abs_in")["content"] == "A"
    (tree.root / "abs_dir").symlink_to(tree.root / "docs")
    assert tree.call("files.read", "abs_dir/sub/b.txt")["content"] == "B"


def test_a_loop_of_links_is_an_error_not_a_hang(tree: Tree) -> None:
    (tree.root / "loop_a").symlink_to("loop_b")
    (tree.root / "loop_b").symlink_to("loop_a")
    (tree.root / "self").symlink_to("self/x", target_is_directory=True)
    for path in ("loop_a", "self/y"):
        with pytest.raises(OSError, match="Too many levels of symbolic links") as caught:
            tree.call("files.read", path)
        assert caught.value.errno == errno.ELOOP


def test_a_dangling_link_inside_the_root_is_written_through_to_its_target(tree: Tree) -> None:
    (tree.root / "later").symlink_to("docs/later.txt")
    assert tree.call("files.stat", "later") == {"path": "later", "exists": False}
    tree.call("files.write", "later", "now")
    assert (tree.root / "docs" / "later.txt").read_text() == "now"
    assert tree.call("files.stat", "later")["link"] is True


def test_missing_parents_are_made_through_links_inside_the_root(tree: Tree) -> None:
    tree.call("files.write", "link_in_dir/new/deeper/n.txt", "n", parents=True)
    assert (tree.root / "docs" / "new" / "deeper" / "n.txt").read_text() == "n"
    with pytest.raises(OutsideRootError):
        tree.call("files.write", "link_out_dir/new/n.txt", "n", parents=True)
    assert not (tree.outside / "dir" / "new").exists()


def test_special_files_are_neither_read_nor_written_nor_waited_on(tree: Tree) -> None:
    os.mkfifo(tree.root / "pipe")  # opening it to read or write would wait for the other end
    with pytest.raises(OSError, match="not a regular file"):
        tree.call("files.read", "pipe")
    with pytest.raises(OSError, match="No such device or address: 'pipe'"):
        tree.call("files.write", "pipe", "x")  # no reader: refused at once
    with pytest.raises(OSError, match="cannot be copied"):
        tree.call("files.copy", "pipe", "pipe2")


def test_the_root_itself_is_neither_read_nor_removed(tree: Tree) -> None:
    with pytest.raises(IsADirectoryError):
        tree.call("files.read", ".")
    with pytest.raises(IsADirectoryError):
        tree.call("files.delete", str(tree.root))
    assert tree.call("files.mkdir", ".", exist_ok=True) == {"path": ".", "created": False}
    assert tree.call("files.stat", "docs/..")["type"] == "directory"
