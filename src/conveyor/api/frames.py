"""The frames of the persistent connection: one operation call, or its answer, per WebSocket
message, each a JSON header line and then the body, as REST would carry it:

    {"id": 7, "op": "submit", "params": {"wait": 5}}\\n{"handler": "echo", "args": [1]}
    {"id": 7, "status": 201}\\n{"id": "01a2...", "state": "queued", ...}

The header is small and read with json; the body goes to its model's JSON parser untouched, as a
REST body does. A call's `id` is the client's own (any integer), echoed in the answer: a client
keeps many calls in flight on one connection and matches the answers as they come, in any
order. `secret` carries a worker's own secret on the calls it makes for itself; `retry_after`
(seconds) comes with a 503. A call that answers more than once (a following lease) marks every
answer but its last `"more": true`: the call stays open until an answer without it. The client
may ask such a call to end early with a frame of its own, `{"id": 7, "stop": true}`: its last
answer then comes without delay.
"""

from __future__ import annotations

import json
from typing import Any

STREAM_PATH = "/api/v1/stream"
"""Where the server accepts the persistent connection (a WebSocket), on its API port."""
SUBPROTOCOL = "conveyor.v1"


class FrameError(ValueError):
    """A frame that is not a header line of JSON (an object) followed by a body."""


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def decode(frame: bytes | str) -> tuple[dict[str, Any], bytes]:
    data = frame.encode() if isinstance(frame, str) else frame
    line, newline, body = data.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise FrameError(f"the frame's first line is not JSON: {exc}") from None
    if not newline or not isinstance(header, dict):
        raise FrameError("a frame is a JSON object on one line, a newline, then the body")
    return header, body
