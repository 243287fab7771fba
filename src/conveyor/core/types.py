"""The small vocabulary shared by every layer."""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]
JSONObject: TypeAlias = dict[str, JSON]

TaskId: TypeAlias = str
WorkerId: TypeAlias = str
Token: TypeAlias = int
"""A fencing token: the attempt number a lease was granted for."""
