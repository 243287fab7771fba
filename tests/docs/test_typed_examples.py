"""The Python examples of README.md and docs/*.md type-check under `mypy --strict`, as in a
user's project: each page's ```python blocks are written to files of their own, outside the
checkout, and mypy sees `conveyor` only as the installed package (its `py.typed`), with no
config of ours and no plugin.

Blocks come from tests/docs/test_snippets.py's extraction, so the conventions are the same: a
block whose first line is `# path/to/module.py: ...` is written at that path, for the page's
other blocks to import. A block marked `<!-- snippet: skip REASON -->` is not run there, but it
is still code a reader copies, so it is checked here too. Every block is a whole program today;
a fragment should be made one in the page rather than excused here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

from tests.docs.test_snippets import PAGES, ROOT, Snippet, snippets

pytestmark = pytest.mark.slow
ERROR = re.compile(r"^(?P<file>[^:\n]+\.py):(?P<line>\d+): error: ", re.M)


def python_blocks(page: Path) -> list[Snippet]:
    return [s for s in snippets(page) if s.language == "python"]


TYPED = [page for page in PAGES if python_blocks(page)]


def shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def write_page(blocks: list[Snippet], where: Path) -> dict[str, Snippet]:
    """The page's blocks as files under `where`, each mapped to its block."""
    files = {}
    for block in blocks:
        name = block.file or f"example_{block.line}.py"
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if block.file is not None:
            (target.parent / "__init__.py").touch()
        target.write_text(block.text)
        files[name] = block
    return files


def type_errors(blocks: list[Snippet], where: Path, cache: Path) -> list[str]:
    """mypy --strict's errors on the blocks, each as `page:line` of the markdown."""
    files = write_page(blocks, where)
    config = where / "mypy.ini"
    config.write_text("[mypy]\n")  # not the project's: a user's project has none of ours
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--config-file", str(config), "--cache-dir", str(cache),
         "--no-error-summary", "--show-error-codes", *sorted(files)]
    )  # fmt: skip
    assert status in (0, 1), f"mypy could not run:\n{stdout}{stderr}"
    errors = []
    for match in ERROR.finditer(stdout):
        block = files[match.group("file")]
        line = block.line + int(match.group("line"))  # the fence is the block's line 0
        message = stdout[match.end() :].split("\n", 1)[0]
        errors.append(f"{shown(block.page)}:{line}: {message}")
    assert errors or status == 0, stdout
    return errors


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: conveyor's own modules are analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


def test_the_examples_are_found() -> None:
    names = {page.name for page in TYPED}
    assert {"README.md", "sdk.md"} <= names, names
    assert sum(len(python_blocks(page)) for page in TYPED) >= 5


@pytest.mark.parametrize("page", TYPED, ids=[shown(p) for p in TYPED])
def test_the_examples_type_check(
    page: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # files are named relative to here, as a user's would be
    errors = type_errors(python_blocks(page), tmp_path, cache)
    assert not errors, "mypy --strict on the page's examples:\n" + "\n".join(errors)


def test_a_wrong_example_is_caught(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check itself can fail: a call with a wrong argument type, found at its markdown line."""
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n```python\nfrom conveyor import Client\n\n"
        'with Client("http://127.0.0.1:8000") as client:\n'
        '    client.result("id", timeout_s="soon")\n```\n'
    )
    errors = type_errors(python_blocks(page), tmp_path, cache)
    assert len(errors) == 1 and errors[0].startswith("page.md:7: ")
