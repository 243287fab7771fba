"""Refuses a path or a query string holding a NUL (`%00`) with 422, before any route runs.

Every other rule on text lives in the wire models (`conveyor.core.text`); path parameters and
query values reach the store without a model of their own, and PostgreSQL cannot read a NUL
(`GET /tasks/a%00b` was a 503 there and a 404 on SQLite). Lone surrogates cannot come this way:
percent-escapes that are not UTF-8 are decoded to U+FFFD.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.core.text import text_problem


class RequestText:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refusal := _refusal(scope)) is not None:
            await _refuse(send, refusal)
            return
        await self.app(scope, receive, send)


def _refusal(scope: Scope) -> dict[str, object] | None:
    """The 422 item for the first NUL in the path or the query, if any (cheap when none)."""
    path: str = scope["path"]
    if (problem := text_problem(path)) is not None:
        return {"type": "value_error", "loc": ["path"], "msg": f"the path {problem}"}
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    # Decoded as Starlette decodes it for the routes.
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        for text in (name, value):
            if (problem := text_problem(text)) is not None:
                return {
                    "type": "value_error",
                    "loc": ["query", name.replace("\x00", "\ufffd")],
                    "msg": f"the query parameter {problem}",
                }
    return None


async def _refuse(send: Send, item: dict[str, object]) -> None:
    body = json.dumps({"detail": [item]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": body})
