"""What the browser tests share: opening the dashboard, moving between its pages, confirming its
dialogs, and running axe-core in a page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from conveyor.testing import Cluster
from tests.browser.conftest import ROOT

WAIT_MS = 20_000  # a poll every 1.5 s; tasks and heartbeats come within a few
AXE = ROOT / "build" / "axe-core" / "axe.min.js"  # scripts/ensure-axe.sh puts it there
BLOCKING_IMPACTS = ("serious", "critical")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_dashboard(page: Page, cluster: Cluster, route: str = "/") -> None:
    page.goto(f"{cluster.url}/#{route}")
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)


def go(page: Page, route: str) -> None:
    """Navigate inside the page (a hash change: no reload, the polls carry on)."""
    page.evaluate("route => { location.hash = route }", route)


def confirm(page: Page) -> None:
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("confirm").click()
    expect(dialog).to_have_count(0)


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str
    help: str
    targets: list[str]

    def __str__(self) -> str:
        return f"{self.rule} ({self.impact}): {self.help}: {', '.join(self.targets[:5])}"


def axe_violations(page: Page) -> tuple[list[Violation], int]:
    """Run axe-core on the page as it is now; its serious and critical violations, and how many
    rules passed (so that a run that checked nothing cannot pass). `label-content-name-mismatch`
    (a link or button whose name does not contain its visible text), experimental in axe, is
    turned on."""
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed at {AXE}: run scripts/ensure-axe.sh")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol: the page's Content-Security-Policy, which
        # refuses inline scripts, does not apply.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results: dict[str, Any] = page.evaluate(
        """() => axe.run(document, {
            resultTypes: ["violations"],
            rules: { "label-content-name-mismatch": { enabled: true } },
        })"""
    )
    found = [
        Violation(v["id"], v["impact"], v["help"], [str(n["target"]) for n in v["nodes"]])
        for v in results["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]
    return found, len(results["passes"])
