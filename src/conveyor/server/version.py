"""The installed package's version, as the server shows it (/health, the dashboard, metrics)."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version


@functools.cache
def package_version() -> str:
    # Cached: reading the installed metadata takes most of a millisecond, on every /health.
    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "unknown"
