"""A worker's calls are its own: each one is bound to the registration that made the worker.

Every worker of a fleet shares the worker role's bearer token, and worker ids are listed to every
client; the token alone would let one worker heartbeat, lease and report as another (a forged
report with a guessed fencing token would be recorded). So registration hands the worker a secret
of its own, an HMAC of its id under a key every server of the database shares (kept in the
database: `Engine.worker_identity_key`). A call that acts for worker W (an operation declared
`acts_for_worker`: its heartbeat, lease, report, or its deregistration) must carry W's secret, in
`X-Conveyor-Worker-Secret` over REST and in the frame over the persistent connection; checking it
needs no database read, on whichever server the call lands.

An admin token acts for any worker without one; so does anyone on a server with no tokens at
all, where every caller is an admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from conveyor.api.schemas import WORKER_SECRET_HEADER

HEADER = WORKER_SECRET_HEADER

_HEADER = HEADER.lower().encode()


class WorkerSecrets:
    """Issues each worker's secret and checks the one a call presents."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the worker identity key must have at least 16 bytes")
        self._key = key

    def issue(self, worker_id: str) -> str:
        digest = hmac.new(self._key, worker_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def holds(self, worker_id: str, presented: bytes | None) -> bool:
        if presented is None:
            return False
        return hmac.compare_digest(self.issue(worker_id).encode(), presented)


def presented_secret(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == _HEADER:
            return value.strip()
    return None
