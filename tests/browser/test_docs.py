"""/docs in a real browser, under its Content-Security-Policy: Swagger UI (served from the
package) renders every operation and can call one, and the browser reports no violation."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from conveyor.testing import Cluster
from tests.browser.conftest import Problems

WAIT_MS = 20_000


def test_swagger_ui_works_under_a_strict_content_security_policy(
    page: Page, cluster: Cluster, problems: Problems
) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    answer = page.goto(f"{cluster.url}/docs")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, policy
    assert "frame-ancestors 'none'" in policy, policy
    expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".opblock").count() >= 20
    health = page.locator(
        ".opblock", has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/health$"))
    )
    health.locator(".opblock-summary").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    expect(
        health.locator(".live-responses-table tr.response .response-col_status").first
    ).to_have_text("200", timeout=WAIT_MS)
    assert violations == []
