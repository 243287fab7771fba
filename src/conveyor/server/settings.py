"""Server settings: where to listen and the limits of the HTTP layer, read once by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.server.auth import Tokens


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    timer_interval_s: float = 0.5
    """How often the timers release due tasks, expire leases and declare silent workers dead."""
    max_body_bytes: int = 1_048_576
    """Larger request bodies are refused with 413 before any of them is parsed."""
    max_wait_s: float = 60.0
    """Long-polls (a lease's `wait_s`, a result's `?wait=S`) wait at most this long, whatever
    they ask for; lower it behind a proxy that closes idle connections sooner."""
    disk_path: str = "."
    """The directory whose disk usage /monitor reports (the database's, when the CLI knows it)."""
    tokens: Tokens = field(default_factory=Tokens)
    """Bearer tokens and their roles (conveyor.server.auth); none: the API is open."""
    metrics_queues: tuple[str, ...] = ()
    """Queues (names or fnmatch patterns) /metrics reports as themselves even before a worker
    serves them; others are `other` until then (conveyor.server.metric_labels)."""
    metrics_handlers: tuple[str, ...] = ()
    """Handlers (names or patterns) /metrics reports as themselves even before one succeeds."""

    def __post_init__(self) -> None:
        if self.timer_interval_s <= 0:
            raise ValueError("timer_interval_s must be positive")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if not 0 <= self.max_wait_s <= 60:
            raise ValueError("max_wait_s must be between 0 and 60")
        if not 0 <= self.port <= 65_535:
            raise ValueError("port must be between 0 and 65535")
