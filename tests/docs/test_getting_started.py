"""Every command of docs/getting-started.md, run in order in a temporary directory, as a reader
would: the install block in a fresh virtual environment (from this checkout), blocks titled
"keeps running" in the background (the server, the workers), the others one after the other.
A command must succeed, and a `# prints TEXT` comment is checked against what its block printed.

The page's own port (8000) may be taken on a shared machine, so the server and the CLI get a free
one through their environment variables (CONVEYOR_SERVER_PORT, CONVEYOR_URL): the page's commands
run unchanged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conveyor.testing import free_port, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```(\w*)(?: title=\"([^\"]*)\")?\n(.*?)^```", re.M | re.S)
PRINTS = re.compile(r"#\s*prints (.+)$", re.M)


@dataclass
class Block:
    title: str
    script: str

    @property
    def background(self) -> bool:
        return "keeps running" in self.title

    @property
    def expected(self) -> list[str]:
        return [text.strip() for text in PRINTS.findall(self.script)]


def blocks() -> list[Block]:
    found = []
    for language, title, script in BLOCK.findall(PAGE.read_text()):
        assert language == "bash", f"a ```{language} block: every command must be in a bash block"
        found.append(Block(title or "", script))
    return found


def test_the_page_has_an_install_block_and_two_long_running_ones() -> None:
    found = blocks()
    assert found[0].title == "install"
    assert [b.title for b in found if b.background] == [
        "terminal 1: keeps running",
        "terminal 2: keeps running",
    ]
    assert sum(len(b.expected) for b in found) >= 6


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The reader's environment: a home of their own, a working directory holding the checkout
    as ./conveyor, no CONVEYOR_* settings but the port, pip configured as on this machine."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "conveyor").symlink_to(ROOT, target_is_directory=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "VIRTUAL_ENV"))}
    real_home = Path.home()
    pip_config = real_home / ".config" / "pip" / "pip.conf"
    if pip_config.exists():  # the mirror this machine uses, though HOME moved
        env["PIP_CONFIG_FILE"] = str(pip_config)
    env.update(
        HOME=str(home),
        PWD=str(work),
        PIP_CACHE_DIR=str(real_home / ".cache" / "pip"),
        CONVEYOR_SERVER_PORT=str(port),
        CONVEYOR_URL=f"http://127.0.0.1:{port}",
        COLUMNS="160",  # a terminal's width, so that tables are not cut to 80 columns
        PATH=os.environ["PATH"],
    )
    env["WORK"] = str(work)
    yield env


def alive_workers(url: str) -> int:
    try:
        workers = httpx.get(f"{url}/api/v1/workers", timeout=2).json()["workers"]
    except httpx.HTTPError:
        return 0
    return sum(w["state"] == "alive" for w in workers)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_command_of_getting_started_runs(reader: dict[str, str], tmp_path: Path) -> None:
    env = dict(reader)
    work = Path(env.pop("WORK"))
    url = env["CONVEYOR_URL"]
    background: list[tuple[Block, subprocess.Popen[bytes]]] = []
    try:
        for number, block in enumerate(blocks(), 1):
            if block.background:
                with (tmp_path / f"block-{number}.log").open("wb") as log:
                    proc = subprocess.Popen(
                        ["bash", "-c", f"exec {block.script.strip()}"],
                        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                background.append((block, proc))
                if "conveyor server" in block.script:
                    wait_until(lambda: healthy(url), 30, "the server of the page to answer")
                else:
                    wait_until(lambda: alive_workers(url) >= 2, 30, "the page's two workers")
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.script],
                cwd=work, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"block {number} failed:\n{block.script}\n{output}"
            for text in block.expected:
                assert text in output, f"block {number}: {text!r} not in:\n{output}"
            if block.title == "install":  # what `activate` did, for the blocks after it
                venv = Path(env["HOME"]) / ".venvs" / "conveyor"
                env["VIRTUAL_ENV"] = str(venv)
                env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
                assert (venv / "bin" / "conveyor").exists()
        # Step 8: Ctrl-C in terminal 2 (the workers drain and exit 0), then in terminal 1 (the
        # server stops; click reports the interrupt as "Aborted!", status 1).
        for block, proc in reversed(background):
            proc.send_signal(signal.SIGINT)
            code = proc.wait(60)
            log_text = (tmp_path / f"block-{1 + blocks().index(block)}.log").read_text()
            interrupted = code == 1 and log_text.rstrip().endswith("Aborted!")
            assert code == 0 or interrupted, f"{block.title} exited {code}:\n{log_text}"
            assert "Traceback" not in log_text, log_text
        assert background[1][1].returncode == 0  # the workers' supervisor drained them
    finally:
        for _, proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
