"""Every example under examples/, run as the README says, against a real server and workers.

- seed 002: filesystem.yaml, files.yaml, network.yaml (against a local page) and pipeline.yaml,
  with `conveyor apply --wait`, and embedded with `conveyor run`;
- seed 003: `conveyor submit sha256 "Hello, World!" --wait` with several workers, and work
  spread over them;
- seed 000: the three scripts in examples/seed_scheduler/;
- seed 004: examples/task_generator.py against three workers.

One cluster (a server and three workers that allow shell, work in one files root and let the
http handler reach the local test site on 127.0.0.1) serves the whole module: starting one takes
seconds, and no test here stops or kills any of its processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.client import Client
from conveyor.core.spec import TaskSpec
from conveyor.core.states import TaskState
from conveyor.testing import Cluster
from tests.helpers.web import PAGE_TITLE, LocalSite, serve_site

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HELLO_SHA256 = "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"
TASK_ID = re.compile(r"^([0-9a-f]{32})\b", re.MULTILINE)


def run(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "conveyor", *args, cwd=cwd)


WORKERS = ("w1", "w2", "w3")


@pytest.fixture(scope="module")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files-root")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, files_root: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), cwd=ROOT)
    c.start_server()
    try:
        for name in WORKERS:
            # No prefetch: the spread check needs a busy worker to lease nothing more.
            args = ("--allow", "shell", "--files-root", str(files_root), "--prefetch", "0",
                    "--allow-network", "127.0.0.1")  # fmt: skip
            c.start_worker(name, extra_args=args)
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(cluster.url) as c:
        yield c


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with serve_site() as s:
        yield s


def apply(cluster: Cluster, example: str, *args: str, cwd: Path) -> dict[str, dict[str, Any]]:
    """`conveyor apply EXAMPLE --wait --json`: every task of the file, by name."""
    done = conveyor(
        "apply", str(EXAMPLES / example), "--wait", "--json", "--server", cluster.url, *args,
        cwd=cwd,
    )  # fmt: skip
    tasks = {t["name"]: t for t in json.loads(done.stdout)}
    failed = {name: t["error"] for name, t in tasks.items() if t["state"] != "succeeded"}
    assert not failed, failed
    return tasks


# ---- seed 002 -----------------------------------------------------------------------------------


def test_filesystem_example(cluster: Cluster, files_root: Path, tmp_path: Path) -> None:
    tasks = apply(cluster, "filesystem.yaml", cwd=tmp_path)
    assert len(tasks) == 11
    top = files_root / "conveyor-filesystem"
    report = "first line\nsecond line\n"
    assert (top / "reports" / "2026" / "report.txt").read_text() == report
    assert (top / "backup" / "2026" / "report.txt").read_text() == report
    assert sorted(p.name for p in top.iterdir()) == ["backup", "reports"], "scratch is gone"
    listed = [e["path"] for e in tasks["listing"]["result"]["entries"]]
    assert "conveyor-filesystem/backup/2026/report.txt" in listed


def test_files_example_with_a_variable(cluster: Cluster, files_root: Path, tmp_path: Path) -> None:
    tasks = apply(cluster, "files.yaml", "--var", "dir=notes", cwd=tmp_path)
    content = "Conveyor notes\n- written by a task\n"
    assert (files_root / "notes" / "notes.txt").read_text() == content
    assert tasks["report"]["result"] == {
        "content": content,
        "bytes": len(content),
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
    }


def test_network_example_against_a_local_page(
    cluster: Cluster, site: LocalSite, tmp_path: Path
) -> None:
    tasks = apply(cluster, "network.yaml", "--var", f"url={site.url}/", cwd=tmp_path)
    summary = tasks["summary"]["result"]
    assert (summary["status"], summary["title"]) == (200, PAGE_TITLE)
    assert summary["links"] == [
        f"{site.url}/docs",
        f"{site.url}/about.html",
        "https://example.org/x",
    ]
    assert [r["path"] for r in site.requests] == ["/"], "the page was fetched once"


def test_pipeline_example(cluster: Cluster, tmp_path: Path) -> None:
    tasks = apply(cluster, "pipeline.yaml", cwd=tmp_path)
    text = tasks["compose"]["result"]
    assert tasks["report"]["result"] == {
        "text": text,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "waited_s": 0.2,
    }
    assert tasks["compose"]["finished_at"] <= tasks["digest"]["started_at"]
    assert tasks["digest"]["finished_at"] <= tasks["report"]["started_at"]


@pytest.mark.parametrize("example", ["filesystem.yaml", "files.yaml", "network.yaml"])
def test_examples_run_embedded(example: str, site: LocalSite, tmp_path: Path) -> None:
    done = conveyor(
        "run", str(EXAMPLES / example), "--db", str(tmp_path / "run.db"), "--json",
        "--files-root", str(tmp_path),
        *(["--var", f"url={site.url}/", "--allow-network", "127.0.0.1"] if "network" in example else []),
        cwd=tmp_path,
    )  # fmt: skip
    outcome = json.loads(done.stdout)
    assert outcome["ok"] is True and set(outcome["counts"]) == {"succeeded"}


def test_run_defaults_the_files_root_to_the_current_directory(tmp_path: Path) -> None:
    conveyor("run", str(EXAMPLES / "files.yaml"), "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert (tmp_path / "conveyor-files" / "notes.txt").exists()


def test_a_job_file_mistake_is_one_line_and_submits_nothing(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {name: get, handler: http, args: ['${nowhere}']}\n")
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "apply", str(bad), "--server", cluster.url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "task 'get', field 'args.0': unknown variable 'nowhere'" in done.stderr
    assert all(t.name != "get" for t in client.iter_tasks()), "nothing was submitted"


# ---- seed 003 -----------------------------------------------------------------------------------


def test_submit_sha256_and_wait_prints_the_digest(cluster: Cluster, tmp_path: Path) -> None:
    done = conveyor(
        "submit", "sha256", "Hello, World!", "--wait", "--server", cluster.url, cwd=tmp_path
    )
    assert done.stdout == HELLO_SHA256 + "\n"


def test_submissions_spread_over_the_workers(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    for text in ("Another string to hash", "My string to hash"):
        done = conveyor("submit", "sha256", text, "--wait", "--server", cluster.url, cwd=tmp_path)
        assert done.stdout.strip() == hashlib.sha256(text.encode()).hexdigest()
    # One-second tasks at once, one more than there are slots (one per worker): each worker
    # takes one of the first three, since none can lease a second while its slot is busy.
    tasks = client.submit_batch(
        [TaskSpec(handler="sleep", args=[1.0]) for _ in range(len(WORKERS) + 1)]
    )
    for task in tasks:
        assert client.result(task.id, timeout_s=60).state is TaskState.SUCCEEDED
    ran_on = {client.get(t.id).attempt_log[-1].worker_id for t in tasks}
    assert ran_on == {w.id for w in client.workers() if w.name in WORKERS}


# ---- seed 000 -----------------------------------------------------------------------------------


def test_seed_scheduler_scripts(cluster: Cluster, client: Client, tmp_path: Path) -> None:
    scripts = EXAMPLES / "seed_scheduler"
    sent = run(sys.executable, str(scripts / "send_task_request.py"), "--server", cluster.url,
               "--count", "9", cwd=tmp_path)  # fmt: skip
    ids = TASK_ID.findall(sent.stdout)
    assert len(ids) == 9 and sent.stdout.startswith("submitted 9 tasks")
    for task_id in ids:
        assert client.result(task_id, timeout_s=60).state is TaskState.SUCCEEDED

    # The URL from the environment, as the scripts' default.
    env = {**os.environ, "CONVEYOR_URL": cluster.url}
    monitored = run(
        sys.executable, str(scripts / "send_monitoring_request.py"), cwd=tmp_path, env=env
    )
    for figure in ("CPU:", "RAM:", "GPU:", "Disk:"):
        assert monitored.stdout.count(figure) == 1 + len(WORKERS), (figure, monitored.stdout)
    assert all(f"worker {name} " in monitored.stdout for name in WORKERS)
    raw = run(
        sys.executable, str(scripts / "send_monitoring_request.py"), "--json", cwd=tmp_path, env=env
    )
    assert "cpu_percent" in json.loads(raw.stdout)["server"]

    status = run(sys.executable, str(scripts / "send_status_request.py"), "--server", cluster.url,
                 cwd=tmp_path)  # fmt: skip
    lines = {
        m.group(1): m.group(0) for m in re.finditer(r"^([0-9a-f]{32}) .*$", status.stdout, re.M)
    }
    assert set(ids) <= set(lines), "every task is listed"
    assert all(" succeeded " in lines[task_id] for task_id in ids)
    total = re.search(r"^(\d+) tasks: ", status.stdout, re.M)
    assert total is not None and int(total.group(1)) == len(lines)


# ---- seed 004 -----------------------------------------------------------------------------------


def test_task_generator_against_three_workers(
    cluster: Cluster, site: LocalSite, tmp_path: Path
) -> None:
    assert len(WORKERS) == 3
    done = run(
        sys.executable, str(EXAMPLES / "task_generator.py"), "--server", cluster.url,
        "--count", "25", "--url", f"{site.url}/", "--shell", "--seed", "4",
        cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout
    assert "all outcomes as expected (the deliberate failure failed)" in out
    rows = {
        kind: [int(n) for n in counts.split()]
        for kind, counts in re.findall(
            r"^(sha256|echo|sleep|http|shell|fail)((?:\s+\d+){3})", out, re.M
        )
    }
    # type: [count, succeeded, failed]
    assert rows == {kind: [5, 5, 0] for kind in ("sha256", "echo", "sleep", "http", "shell")} | {
        "fail": [1, 0, 1]
    }
    workers = dict(re.findall(r"^(w[123])\s+(\d+)$", out, re.M))
    assert sum(map(int, workers.values())) == 26
    assert len(workers) >= 2, f"the tasks should spread over the workers: {workers}"
