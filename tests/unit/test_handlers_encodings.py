"""Only text encodings: a codec such as bz2_codec turns a few bytes into gigabytes, so every
handler that takes an `encoding` refuses the codecs that are not text encodings."""

from __future__ import annotations

import bz2
import codecs
from pathlib import Path
from typing import Any

import pytest

from conveyor.handlers import HandlerPolicy, resolve_handler

BYTES_CODECS = [
    "bz2_codec",
    "bz2",
    "zlib_codec",
    "base64_codec",
    "hex",
    "uu_codec",
    "quopri",
    "rot13",
]

# Each handler that takes `encoding`, called with the given one on a file "data" in the root.
CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "files.read": ("files.read", ("data",), {}),
    "files.write": ("files.write", ("data", "text"), {}),
    "files.append": ("files.append", ("data", "text"), {}),
    "files.create": ("files.create", ("new", "text"), {}),
    "sha256-text": ("sha256", ("text",), {}),
    "sha256-path": ("sha256", (), {"path": "data"}),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "data").write_bytes(bz2.compress(b"\0" * 100_000))  # 40-odd bytes
    return tmp_path


@pytest.mark.parametrize("encoding", BYTES_CODECS)
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_codecs_that_are_not_text_encodings_are_refused(
    root: Path, call: tuple[str, tuple[Any, ...], dict[str, Any]], encoding: str
) -> None:
    name, args, kwargs = call
    handler = resolve_handler(name, HandlerPolicy(files_root=str(root)))
    before = (root / "data").read_bytes()
    with pytest.raises(ValueError) as caught:
        handler(*args, **kwargs, encoding=encoding)
    message = str(caught.value)
    assert f"encoding {encoding!r} is not a text encoding" in message, message
    assert "utf-8" in message and "latin-1" in message, "the message names encodings to use"
    assert (root / "data").read_bytes() == before and not (root / "new").exists()


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_an_unknown_encoding_is_a_clear_value_error(
    root: Path, call: tuple[str, tuple[Any, ...], dict[str, Any]]
) -> None:
    name, args, kwargs = call
    handler = resolve_handler(name, HandlerPolicy(files_root=str(root)))
    with pytest.raises(ValueError, match="unknown encoding 'no-such-codec'"):
        handler(*args, **kwargs, encoding="no-such-codec")


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "latin-1", "utf-16", "cp1252", "ascii"])
def test_text_encodings_work(tmp_path: Path, encoding: str) -> None:
    policy = HandlerPolicy(files_root=str(tmp_path))
    resolve_handler("files.write", policy)("t.txt", "hello", encoding=encoding)
    assert (tmp_path / "t.txt").read_bytes() == "hello".encode(encoding)
    read = resolve_handler("files.read", policy)("t.txt", encoding=encoding)
    assert read["content"] == "hello"
    assert codecs.lookup(encoding)._is_text_encoding  # type: ignore[attr-defined]
