"""The real app under uvicorn, in a thread of the test process: REST and the persistent
connection on a real port, with the engine at hand for the test to look at."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from conveyor.engine import Engine, EngineSettings
from conveyor.server import ServerSettings, create_app, request_shutdown
from conveyor.server.serving import uvicorn_config
from conveyor.store.sqlite import SQLiteStore

START_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """stop() and start() again keep the port and the database."""

    def __init__(
        self,
        db: Path,
        *,
        port: int | None = None,
        settings: EngineSettings | None = None,
        server_settings: ServerSettings | None = None,
    ) -> None:
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings or EngineSettings()
        self.server_settings = server_settings or ServerSettings(timer_interval_s=0.1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._store: SQLiteStore | None = None

    def start(self) -> LiveServer:
        self._store = SQLiteStore(self.db)
        self.engine = Engine(self._store, settings=self.settings)
        self.app = create_app(self.engine, self.server_settings)
        config = uvicorn_config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            timeout_graceful_shutdown=1,
            max_body_bytes=self.server_settings.max_body_bytes,
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        self._thread.start()
        give_up_at = time.monotonic() + START_S
        while not server.started:  # uvicorn offers no event to wait on
            if not self._thread.is_alive() or time.monotonic() > give_up_at:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None or self._store is None:
            return
        request_shutdown(self.app)
        self._server.should_exit = True
        self._thread.join(timeout=START_S)
        self._store.close()
        self._server = self._thread = self._store = None
