"""Who may call an operation: the roles of bearer tokens, and each operation's access.

| role   | may call                                                                          |
| ------ | --------------------------------------------------------------------------------- |
| client | tasks (submit, read, wait, cancel, retry, delete), schedules, reading workers,   |
|        | status, monitor, the dashboard's views, /metrics                                  |
| worker | the worker side: register, heartbeat, lease, report, deregister itself            |
| admin  | everything, and it alone deregisters other workers                                |

A worker token says that a caller is a worker, not which one: an operation that acts for a
worker (`Operation.acts_for_worker`) also needs that worker's own secret, from its registration
(conveyor.server.worker_identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a group of operations: the roles named here (admin is always among them)."""

    name: str
    roles: frozenset[Role]

    def permits(self, role: Role) -> bool:
        return role in self.roles

    def describe(self) -> str:
        return " or ".join(sorted(self.roles))


CLIENT = Access("client", frozenset({Role.CLIENT, Role.ADMIN}))
WORKER = Access("worker", frozenset({Role.WORKER, Role.ADMIN}))
ADMIN = Access("admin", frozenset({Role.ADMIN}))
ANY = Access("any", frozenset(Role))
OPEN: Access | None = None
"""No token needed (health, the docs, the dashboard's page)."""
