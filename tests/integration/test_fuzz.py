"""Schemathesis against a real `conveyor server`, every check, a short run: 0 failures.

The same runner as `scripts/fuzz.py` (the long run), with the expectations of `schemathesis.toml`:
once on the open API, once with tokens (as an admin, and its `ignored_auth` check sending
requests without the token and with a wrong one). A failure prints schemathesis' report, with the
seed and a curl command for each failing case.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conveyor.api.operations import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]
RUN_S = 20


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conveyor_fuzz", ROOT / "scripts" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    module = load_runner()
    if not Path(module.SCHEMATHESIS).exists() and shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return module


@pytest.mark.fuzz
@pytest.mark.parametrize("tokens", [False, True], ids=["open", "tokens"])
def test_schemathesis_finds_nothing_with_every_check(
    runner: ModuleType, tokens: bool, tmp_path: Path
) -> None:
    result = runner.fuzz(max_time_s=RUN_S, tokens=tokens, work_dir=tmp_path)
    print(result.summary())  # the figures, with -rP
    report = f"{result.summary()}\n{result.output[-20_000:]}"
    assert result.exit_code == 0, report
    assert result.failures == 0 and result.errors == 0, report
    # It did fuzz, not just start: two cases an operation at the least. (A loaded machine makes
    # 139 in the time given to 45 operations; a quiet one over 400.)
    assert result.generated >= 2 * len(OPERATIONS), report
    assert result.phases.get("coverage") == "success", report
    assert result.phases.get("fuzzing") == "success", report
