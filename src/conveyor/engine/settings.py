"""Engine settings: timings and limits, read once by whoever builds the engine."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.core.retry import DEFAULT_DELIVERY_LIMIT


@dataclass(frozen=True, slots=True)
class EngineSettings:
    lease_s: float = 30.0
    """How long a lease lasts without a heartbeat; a heartbeat extends it by as much again."""
    heartbeat_interval_s: float = 5.0
    """How often workers are asked to heartbeat; must be well under lease_s."""
    worker_dead_after_s: float = 20.0
    """A worker silent this long is declared dead: nothing extends its leases any more, and each
    of its tasks runs again elsewhere once its lease is over."""
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    max_lease_batch: int = 1000
    timer_batch: int = 1000
    """Expired leases or dead workers handled per timer transaction."""
    retention_s: float | None = None
    """Delete finished tasks (and forget dead workers) this long after they ended; None keeps all."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval_s < self.lease_s:
            raise ValueError("heartbeat_interval_s must be positive and shorter than lease_s")
        if self.worker_dead_after_s <= self.heartbeat_interval_s:
            raise ValueError("worker_dead_after_s must exceed heartbeat_interval_s")
        if self.retention_s is not None and self.retention_s <= 0:
            raise ValueError("retention_s must be positive (or None to keep everything)")
        if self.delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
