"""Task and worker ids: time-ordered, so that new rows land at the end of B-tree indexes."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 hex digits: 48 bits of milliseconds since the epoch, then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{int.from_bytes(os.urandom(10), 'big'):020x}"
