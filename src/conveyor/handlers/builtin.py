"""The handlers every worker has: small, safe building blocks for pipelines and tests.

Each one takes JSON arguments and returns a JSON value; the docstrings are the user documentation.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import NoReturn

from conveyor.core.types import JSON
from conveyor.handlers.fsutil import as_given, open_file, text_encoding
from conveyor.handlers.root import FilesRoot

# Large enough to keep syscalls rare, small enough that hashing a huge file stays flat in memory.
_CHUNK_BYTES = 1024 * 1024


def echo(*args: JSON, **kwargs: JSON) -> JSON:
    """Return the arguments it was given, unchanged.

    - one positional argument and no keyword arguments: that argument (`echo(5)` -> `5`);
    - keyword arguments only: them, as an object (`echo(a=1)` -> `{"a": 1}`);
    - anything else: `{"args": [...], "kwargs": {...}}`.
    """
    if len(args) == 1 and not kwargs:
        return args[0]
    if kwargs and not args:
        return dict(kwargs)
    return {"args": list(args), "kwargs": dict(kwargs)}


def sleep(seconds: float) -> float:
    """Sleep for `seconds` (a non-negative number) and return it.

    Useful to simulate slow work and to try timeouts. Raises ValueError for a negative,
    infinite or non-numeric duration.
    """
    # bool is an int subclass, but `sleep(true)` is surely a mistake in a job file.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"seconds must be a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    time.sleep(seconds)
    return float(seconds)


def fail(message: str = "failed on purpose") -> NoReturn:
    """Always fail, raising RuntimeError(message): to try retries and failure handling."""
    raise RuntimeError(message)


def sha256(
    root: FilesRoot | None,
    /,
    text: str | None = None,
    *,
    path: str | None = None,
    encoding: str = "utf-8",
) -> str:
    """Return the SHA-256 hex digest of a string or of a file's bytes.

    Give exactly one of:
    - `text`: the string to hash, encoded with `encoding` (default "utf-8"; a text encoding);
    - `path`: a file to hash, read in chunks so its size does not matter. Reading a file is a
      file operation: it works only on a worker started with `--files-root DIR`, and only inside
      DIR (a relative path starts there), with the same checks as the `files.*` handlers.

    Raises ValueError when both or neither are given, or when `path` is given on a worker without
    a files root; TypeError when one is not a string; OutsideRootError for a path outside the root.
    (`root` is the worker's files root, which the worker passes in: it is not a task argument.)
    """
    if (text is None) == (path is None):
        raise ValueError("give exactly one of text (a string to hash) or path (a file to hash)")
    text_encoding(encoding)
    digest = hashlib.sha256()
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        digest.update(text.encode(encoding))
        return digest.hexdigest()
    if root is None:
        raise ValueError(
            "hashing a file by path needs a files root: start the worker with --files-root DIR"
        )
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, got {type(path).__name__}")
    with as_given(path), root.locate(path) as place:
        fd = open_file(place, os.O_RDONLY, path)
        try:
            while chunk := os.read(fd, _CHUNK_BYTES):
                digest.update(chunk)
        finally:
            os.close(fd)
    return digest.hexdigest()
