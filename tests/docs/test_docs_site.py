"""The documentation site: it builds with `mkdocs build --strict` and no warning, it loads
nothing from the internet, every page of the nav exists, and the generated pages
(scripts/gen_docs.py: the CLI and REST API references, performance, handlers, monitoring) are
what the code generates now."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return site_dir, output


def test_the_site_builds_strictly_without_a_warning(site: tuple[Path, str]) -> None:
    site_dir, output = site
    assert not re.search(r"^(WARNING|ERROR)", output, re.M), output
    assert (site_dir / "index.html").exists()
    assert (site_dir / "getting-started.html").exists()


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_the_nav_holds_every_page_the_issue_asks_for() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    for page in pages:
        assert (DOCS / page).exists(), page
    for required in (
        "getting-started.md", "concepts.md", "job-files.md", "handlers.md", "configuration.md",
        "deployment.md", "monitoring.md", "security.md", "performance.md", "migration.md",
        "reference/cli.md", "reference/api.md",
    ):  # fmt: skip
        assert required in pages, required
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    others = {p for p in written if not p.startswith(("perf/", "screenshots/"))}
    assert others <= set(pages), f"pages missing from the nav: {others - set(pages)}"


def test_the_site_loads_nothing_from_the_internet(site: tuple[Path, str]) -> None:
    site_dir, _ = site
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)=\"(?:https?:)?//", re.I)
    for page in site_dir.rglob("*.html"):
        found = remote.findall(page.read_text())
        assert not found, f"{page.relative_to(site_dir)} loads {found}"
    for sheet in site_dir.rglob("*.css"):
        assert "fonts.googleapis" not in sheet.read_text(), sheet


def test_the_generated_pages_are_up_to_date() -> None:
    module = gen_docs()
    stale = [
        str(path.relative_to(ROOT))
        for path, text in module.pages().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, (
        f"{', '.join(stale)} differ from what the code generates: run "
        "`.venv/bin/python scripts/gen_docs.py` (or `make docs`) and commit the result"
    )


def test_the_migration_page_maps_every_seed_api_and_celery_and_rq() -> None:
    text = (DOCS / "migration.md").read_text()
    for name in (
        "/register_worker", "/heartbeat", "/get_task", "/task_status", "/add_task",
        "/cancel_task", "/unregister_worker", "TaskScheduler", "`Scheduler`", "`Job`",
        "binary RPC", "RabbitMQ", "start_workers.sh", ".delay(", "apply_async", "countdown",
        "eta=", "chain(", "chord(", "beat", "self.retry", "q.enqueue", "enqueue_in",
    ):  # fmt: skip
        assert name in text, name
