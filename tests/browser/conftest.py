"""Browser tests: Playwright drives Debian's Chromium (no `playwright install`) against a real
server with two workers, started once for the whole session.

`scripts/ensure-chromium.sh` (run by `make test`) installs Chromium when it can; without it these
tests skip, saying so. `scripts/ensure-axe.sh` (also run by `make test`) fetches axe-core for the
accessibility tests, which skip without it, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, Response

from conveyor.client import Client
from conveyor.testing import Cluster

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WORKERS = ("browser-w1", "browser-w2")


@pytest.hookimpl(trylast=True)  # after pytest groups the items by their fixtures' scopes
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    browser_items = [item for item in items if here in Path(str(item.fspath)).parents]
    # Last in the session: Playwright's sync API keeps an event loop running in the main thread
    # from its first test to the end of the session, and async tests cannot run beside it.
    chosen = {id(item) for item in browser_items}
    items[:] = [item for item in items if id(item) not in chosen] + browser_items
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
    if not CHROMIUM.exists():
        reason = (
            f"Chromium is not installed at {CHROMIUM}: run scripts/ensure-chromium.sh "
            "(as root: apt-get install -y chromium) to run the browser tests"
        )
        for item in browser_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("browser-cluster")
    c = Cluster(directory, cwd=ROOT)  # lease 3 s: workers heartbeat every second
    c.start_server()
    try:
        for name in WORKERS:
            c.start_worker(name, concurrency=2)
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(cluster.url) as c:
        yield c


@dataclass
class Problems:
    """What a page must never show: console errors, uncaught exceptions, failed requests."""

    allowed_statuses: set[int] = field(default_factory=set)
    found: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not self._allowed(message.text):
            self.found.append(f"console error: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.found.append(f"uncaught: {error}")

    def request_failed(self, request: Request) -> None:
        self.found.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.allowed_statuses:
            self.found.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def _allowed(self, text: str) -> bool:
        return any(f"status of {status}" in text for status in self.allowed_statuses)

    def check(self) -> None:
        assert self.found == [], "\n".join(self.found)


@pytest.fixture
def problems(page: Page) -> Iterator[Problems]:
    found = Problems()
    page.on("console", found.console)
    page.on("pageerror", found.page_error)
    page.on("requestfailed", found.request_failed)
    page.on("response", found.response)
    yield found
    found.check()  # before the page closes, which aborts the polls in flight
