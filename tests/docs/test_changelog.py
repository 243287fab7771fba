"""One version, in pyproject.toml: `conveyor --version` prints it (through the installed
package's metadata), CHANGELOG.md has a section for it, and no module spells it out."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_conveyor_version_prints_the_pyproject_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == f"conveyor, version {project_version()}"


def test_the_changelog_keeps_a_section_for_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in text
    assert re.search(rf"^## {re.escape(project_version())} - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M)
    assert "### Added" in text


def test_no_module_spells_the_version_out() -> None:
    version = project_version()
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert "__version__ =" not in text, path
        assert f'"{version}"' not in text, path
