"""The engine: applies the core's rules through a store. The only writer of task state."""

from conveyor.engine.engine import Engine
from conveyor.engine.events import Changes
from conveyor.engine.reports import HeartbeatReply, Report, ReportAck
from conveyor.engine.settings import EngineSettings

__all__ = ["Changes", "Engine", "EngineSettings", "HeartbeatReply", "Report", "ReportAck"]
