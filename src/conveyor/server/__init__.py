"""The HTTP server: `create_app(engine, settings)` gives the ASGI app; `conveyor server` runs it."""

from conveyor.server.app import create_app, request_shutdown
from conveyor.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "request_shutdown"]
