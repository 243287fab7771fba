"""The small vocabulary shared by every layer."""

from __future__ import annotations

from typing import TypeAlias

from pydantic import JsonValue

JSON: TypeAlias = JsonValue
"""Any JSON value: what task args, kwargs and results may hold. Never pickled objects."""
JSONObject: TypeAlias = dict[str, JSON]

TaskId: TypeAlias = str
WorkerId: TypeAlias = str
Token: TypeAlias = int
"""A fencing token: the attempt number a lease was granted for."""
