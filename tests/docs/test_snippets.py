"""Every shell and Python snippet of README.md and docs/*.md runs here, as a reader would run it,
so that the docs cannot drift from the code.

What runs: ```bash and ```python blocks (other blocks are not commands). Each page's blocks run
in order, in a working directory of the page's own holding the checkout's `examples/`, against a
server the test starts with a worker (queues `default` and `images`, `--allow-module myapp`,
`--allow shell`), reached through `CONVEYOR_URL` as the docs say; a Python snippet's
`http://127.0.0.1:8000` (the default address) is that server's.

Conventions in the markdown:

- `<!-- snippet: skip REASON -->` on the line before a block: it is not run, for REASON (it
  needs the internet, another machine, root, or minutes). Keep these few.
- A Python block whose first line is `# path/to/module.py: ...` is a file of the example: it is
  written there (the worker imports it), not run.
- A shell line whose comment starts with `terminal` (`# terminal 2`) or says `Ctrl-C` is a
  program left running: it starts in the background (a `conveyor server` on a port of its own,
  and the block's commands then talk to it), and must still be running when the block ends.
- `# prints TEXT` (`...` at its end allowed) is checked against the block's output.

docs/getting-started.md is left to tests/docs/test_getting_started.py, which runs its every
command in order, from the install on; the pages generated from README.md's sections, and
docs/reference/, are not run twice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest

from conveyor.testing import free_port, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OWN_TEST = {
    "getting-started.md": "tests/docs/test_getting_started.py runs it from the install on",
    # Generated from README.md's sections (scripts/gen_docs.py): their snippets run there.
    "monitoring.md": "README.md",
    "handlers.md": "README.md",
    "performance.md": "README.md",
}
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SKIP = re.compile(r"<!--\s*snippet:\s*skip\s+(\S.*?)\s*-->\s*$")
FILE = re.compile(r"^#\s*([\w./-]+\.py)\b")
BACKGROUND = re.compile(r"#\s*(terminal\b|.*Ctrl-C)")
PRINTS = re.compile(r"#.*?\bprints (.+?)(?:\.\.\.|…)?$")
DEFAULT_URL = "http://127.0.0.1:8000"
SHELL = {"bash", "sh", "shell"}
BLOCK_TIMEOUT_S = 100  # within pytest-timeout's 120 s
MAX_SKIPPED = 16  # each says why; a benchmark run (README, Performance) cannot run in a test


@dataclass
class Snippet:
    page: Path
    line: int
    language: str
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        match = FILE.match(self.text)
        return match.group(1) if match and self.language == "python" else None


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        language = match.group(1)
        if language not in SHELL and language != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Snippet(page, line, language, match.group(2), skip and skip.group(1)))
    return found


ALL = [s for page in PAGES if page.name not in OWN_TEST for s in snippets(page)]


def test_the_conventions_hold() -> None:
    for page in PAGES:
        for match in re.finditer(r"<!--\s*snippet:[^>]*-->", page.read_text()):
            assert SKIP.search(match.group(0)), f"{page.name}: {match.group(0)} names no reason"
    run = [s for s in ALL if s.skip is None and s.file is None]
    skipped = [s for s in ALL if s.skip is not None]
    assert len(run) >= 9, [s.id for s in run]
    # A ratchet: most of these are deployment recipes for other machines. Lower it when one
    # becomes runnable here; raise it only with a reason in the page.
    assert len(skipped) <= MAX_SKIPPED, [f"{s.id}: {s.skip}" for s in skipped]


@dataclass
class Reader:
    """One page's working directory and the server (with a worker) its snippets talk to."""

    work: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, command: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.work, env=env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def reader_env(work: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(
        CONVEYOR_URL=f"http://127.0.0.1:{port}",
        CONVEYOR_SERVER_PORT=str(port),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        PYTHONPATH=os.pathsep.join([str(work), *filter(None, [env.get("PYTHONPATH")])]),
        COLUMNS="160",
    )
    return env


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def live_workers(url: str) -> int:
    try:
        workers = httpx.get(f"{url}/api/v1/workers", timeout=2).json()["workers"]
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return sum(w["state"] == "alive" for w in workers)


def more_workers(url: str, than: int) -> bool:
    return live_workers(url) > than


@pytest.fixture(scope="module")
def readers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Reader]]:
    made: dict[Path, Reader] = {}
    yield made
    for reader in made.values():
        reader.stop()


def reader_for(readers: dict[Path, Reader], page: Path, tmp: Path) -> Reader:
    """The page's reader, with its server and a worker running (made on first use; the worker
    started again when a snippet drained or stopped it, as `conveyor workers drain` does)."""
    if page not in readers:
        work = tmp / page.stem
        work.mkdir()
        (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
        reader = readers[page] = Reader(work, reader_env(work, free_port()))
        reader.start("conveyor server --db reader.db", work / "server.log", reader.env)
        url = reader.env["CONVEYOR_URL"]
        wait_until(lambda: healthy(url), 30, f"{page.name}'s server")
    reader = readers[page]
    url = reader.env["CONVEYOR_URL"]
    if live_workers(url) == 0:
        reader.start(
            "conveyor worker --queues default,images --allow-module myapp --allow shell "
            f"--files-root {reader.work}",
            reader.work / f"worker-{len(reader.procs)}.log",
            reader.env,
        )
        wait_until(lambda: live_workers(url) >= 1, 30, f"{page.name}'s worker")
    return reader


@pytest.mark.parametrize("snippet", ALL, ids=[s.id for s in ALL])
def test_the_snippet_runs(
    snippet: Snippet, readers: dict[Path, Reader], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if snippet.skip is not None:
        pytest.skip(f"marked in the page: {snippet.skip}")
    tmp = tmp_path_factory.getbasetemp() / "snippets"
    tmp.mkdir(exist_ok=True)
    reader = reader_for(readers, snippet.page, tmp)
    for other in snippets(snippet.page):  # the page's files, whatever their order
        if other.file is not None:
            target = reader.work / other.file
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / "__init__.py").touch()
            target.write_text(other.text)
    if snippet.file is not None:
        return  # written above; run by the snippets that import it
    if snippet.language == "python":
        output = run_python(snippet, reader)
    else:
        output = run_shell(snippet, reader, tmp)
    for line in snippet.text.splitlines():
        expected = PRINTS.search(line)
        if expected:
            assert expected.group(1) in output, f"{snippet.id}: {line!r} not in:\n{output}"


def run_python(snippet: Snippet, reader: Reader) -> str:
    script = reader.work / f"snippet_{snippet.line}.py"
    script.write_text(snippet.text.replace(DEFAULT_URL, reader.env["CONVEYOR_URL"]))
    result = subprocess.run(
        [sys.executable, script.name], cwd=reader.work, env=reader.env,
        capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{snippet.id} failed:\n{snippet.text}\n{output}"
    return output


def run_shell(snippet: Snippet, reader: Reader, tmp: Path) -> str:
    env = dict(reader.env)
    lines = snippet.text.splitlines()
    background = [line for line in lines if BACKGROUND.search(line)]
    script = "\n".join(line for line in lines if line not in background)
    own = Reader(reader.work, env)
    try:
        for number, line in enumerate(background):
            command = line.split("#", 1)[0].strip()
            log = tmp / f"{snippet.page.stem}-{snippet.line}-{number}.log"
            if command.startswith("conveyor server"):  # a server of the block's own
                port = free_port()
                env.update(CONVEYOR_URL=f"http://127.0.0.1:{port}", CONVEYOR_SERVER_PORT=str(port))
                own.start(command + " --db block.db", log, dict(env))
                wait_until(lambda: healthy(env["CONVEYOR_URL"]), 30, f"{snippet.id}'s server")
            elif command.startswith("conveyor worker"):
                url, count = env["CONVEYOR_URL"], live_workers(env["CONVEYOR_URL"])
                own.start(command, log, dict(env))
                wait_until(partial(more_workers, url, count), 30, f"{snippet.id}'s worker")
            else:
                own.start(command, log, dict(env))
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=reader.work, env=env,
            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{snippet.id} failed:\n{script}\n{output}"
        for proc, log in zip(own.procs, own.logs, strict=True):
            assert proc.poll() is None, f"{snippet.id}: exited early:\n{log.read_text()}"
        return output
    finally:
        own.stop()
