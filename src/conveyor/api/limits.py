"""Wire models of concurrency and rate limits (conveyor.core.limiting): setting one, and what
each takes now."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from conveyor.api.params import Params
from conveyor.api.schemas import Response
from conveyor.core.limiting import LIMIT_NAME_PATTERN, LimitSettings, LimitUse


class LimitRef(Params):
    limit: Annotated[str, Field(pattern=LIMIT_NAME_PATTERN, description="The limit's name.")]


class LimitIn(LimitSettings):
    """A limit's settings: `concurrency`, `rate` (per `per_s` seconds), or both. Each key of the
    limit (`tenant:acme`, `tenant:globex`) is held to them on its own."""


class LimitOut(Response):
    name: str
    concurrency: int | None = Field(description="At most this many running per key; null: any.")
    rate: int | None = Field(description="At most this many starts per key in any `per_s` s.")
    per_s: float
    running: int = Field(description="Tasks running now that take one of its keys.")
    held: int = Field(
        description="Queued tasks held back because one of its keys was full when a lease came "
        "to them."
    )

    @classmethod
    def of(cls, use: LimitUse) -> LimitOut:
        limit = use.limit
        return cls(
            name=limit.name,
            concurrency=limit.concurrency,
            rate=limit.rate,
            per_s=limit.per_s,
            running=use.running,
            held=use.held,
        )


class LimitList(Response):
    limits: list[LimitOut] = Field(description="Every limit, by name.")
