"""Placement on every store: a lease gives a worker only the tasks it can run (its handlers,
module prefixes and labels: conveyor.core.capabilities), tasks that require labels wait for a
worker with them, and tasks that prefer labels go to such a worker while one is free."""

from __future__ import annotations

from typing import Any

from conveyor.core.capabilities import Capabilities
from conveyor.core.models import Worker
from conveyor.core.states import TaskState
from conveyor.engine.leasing import MAX_SCAN
from conveyor.handlers import HandlerPolicy
from conveyor.handlers.registry import advertised
from tests.contract.conftest import Harness

PLAIN = advertised(HandlerPolicy())
SHELL = advertised(HandlerPolicy(allow_shell=True))


def _worker(
    h: Harness,
    name: str,
    capabilities: Capabilities | None = PLAIN,
    *,
    labels: dict[str, str] | None = None,
    concurrency: int = 4,
    **fields: Any,
) -> Worker:
    return h.engine.register_worker(
        name=name,
        host="test-host",
        pid=1000,
        concurrency=concurrency,
        capabilities=capabilities,
        labels=labels,
        **fields,
    )


def test_a_shell_task_waits_for_a_worker_that_allows_shell_without_spending_anything(
    h: Harness,
) -> None:
    task = h.submit("shell", args=["true"], max_retries=0)
    plain = _worker(h, "plain")
    assert h.leased_ids(plain) == []
    assert h.leased_ids(plain) == []
    waiting = h.get(task.id)
    assert (waiting.state, waiting.attempts, waiting.deliveries) == (TaskState.QUEUED, 0, 0)
    shell = _worker(h, "shell", SHELL)
    assert h.leased_ids(shell) == [task.id]


def test_module_handlers_go_to_workers_that_allow_their_module(h: Harness) -> None:
    mine = h.submit("myapp:f", name="mine")
    deeper = h.submit("myapp.jobs.nightly:run", name="deeper")
    lookalike = h.submit("myappx.jobs:f", name="lookalike")
    other = h.submit("other:f", name="other")
    builtin = h.submit("echo", name="builtin")
    myapp = _worker(h, "myapp", advertised(HandlerPolicy(allow_modules=("myapp",))))
    assert set(h.leased_ids(myapp)) == {mine.id, deeper.id, builtin.id}
    anything = _worker(h, "any", advertised(HandlerPolicy(allow_modules=("*",))))
    assert set(h.leased_ids(anything)) == {lookalike.id, other.id}


def test_file_handlers_need_a_files_root_and_unknown_builtins_wait(h: Harness) -> None:
    read = h.submit("files.read", args=["a.txt"])
    unknown = h.submit("no-such-handler")
    plain = _worker(h, "plain")
    assert h.leased_ids(plain) == []
    rooted = _worker(h, "rooted", advertised(HandlerPolicy(files_root="/srv/files")))
    assert h.leased_ids(rooted) == [read.id]
    assert h.state(unknown.id) is TaskState.QUEUED
    legacy = _worker(h, "legacy", None)
    assert h.leased_ids(legacy) == [unknown.id], "a worker that did not say is offered anything"


def test_required_labels_keep_a_task_for_workers_that_have_them(h: Harness) -> None:
    eu = h.submit("echo", name="eu", require={"zone": "eu"})
    odd = h.submit("echo", name="odd", require={"team.x/y:z": "a b", "zone": "eu"})
    anywhere = h.submit("echo", name="anywhere")
    us = _worker(h, "us", labels={"zone": "us"})
    bare = _worker(h, "bare")
    assert h.leased_ids(us) == [anywhere.id]
    assert h.leased_ids(bare) == []
    in_eu = _worker(h, "in-eu", labels={"zone": "eu", "gpu": "a100"})
    assert h.leased_ids(in_eu) == [eu.id]
    team = _worker(h, "team", labels={"zone": "eu", "team.x/y:z": "a b"})
    assert h.leased_ids(team) == [odd.id]


def test_required_labels_apply_to_workers_that_did_not_advertise_capabilities(
    h: Harness,
) -> None:
    task = h.submit("echo", require={"zone": "eu"})
    legacy = _worker(h, "legacy", None)
    assert h.leased_ids(legacy) == []
    assert h.leased_ids(_worker(h, "legacy-eu", None, labels={"zone": "eu"})) == [task.id]


def test_a_task_that_prefers_labels_goes_to_a_free_worker_that_has_them(h: Harness) -> None:
    first = h.submit("echo", name="first", prefer={"zone": "eu"})
    eu = _worker(h, "eu", labels={"zone": "eu"}, concurrency=1)
    us = _worker(h, "us", labels={"zone": "us"})
    assert h.leased_ids(us) == [], "the eu worker has a free slot"
    assert h.leased_ids(eu, 1) == [first.id]
    second = h.submit("echo", name="second", prefer={"zone": "eu"})
    assert h.leased_ids(us) == [second.id], "every eu worker is busy: whoever asks takes it"


def test_a_preference_no_live_worker_can_meet_does_not_hold_a_task_back(h: Harness) -> None:
    task = h.submit("echo", prefer={"zone": "eu"})
    _worker(h, "eu-other-queue", labels={"zone": "eu"}, queues=["elsewhere"])
    _worker(h, "eu-no-gpu", labels={"zone": "eu"}, capabilities=None)
    h.engine.drain_workers(ids=[_worker(h, "eu-draining", labels={"zone": "eu"}).id])
    gpu_task = h.submit("echo", prefer={"zone": "eu"}, resources={"gpu": 1})
    us = _worker(h, "us", labels={"zone": "us"}, resources={"gpu": 1})
    assert h.leased_ids(us) == [gpu_task.id], "the eu workers that are free have no gpu"
    assert h.state(task.id) is TaskState.QUEUED, "a free eu worker could run it"


def test_tasks_no_worker_can_run_hide_nothing_behind_them(h: Harness) -> None:
    crowd = h.submit_batch(*({"handler": "shell", "priority": 5} for _ in range(MAX_SCAN + 50)))
    behind = h.submit("echo", priority=1)
    plain = _worker(h, "plain")
    assert h.leased_ids(plain, 5) == [behind.id]
    assert h.state(crowd[0].id) is TaskState.QUEUED


def test_labelled_tasks_no_worker_has_hide_nothing_behind_them(h: Harness) -> None:
    h.submit_batch(*({"require": {"zone": "mars"}, "priority": 5} for _ in range(MAX_SCAN + 50)))
    behind = h.submit("echo", priority=1)
    assert h.leased_ids(_worker(h, "earth", labels={"zone": "eu"}), 5) == [behind.id]


def test_workers_keep_what_they_advertised(h: Harness) -> None:
    w = _worker(h, "w", SHELL, labels={"zone": "eu", "disk": "ssd"})
    reopened = h.reopen().engine.worker(w.id)
    assert reopened.capabilities == SHELL
    assert reopened.capabilities is not None and reopened.capabilities.shell
    assert reopened.labels == {"zone": "eu", "disk": "ssd"}
    assert h.engine.worker(_worker(h, "legacy", None).id).capabilities is None


def test_tasks_keep_what_they_require_and_prefer(h: Harness) -> None:
    task = h.submit("echo", require={"zone": "eu"}, prefer={"disk": "ssd"})
    stored = h.reopen().get(task.id)
    assert (stored.require, stored.prefer) == ({"zone": "eu"}, {"disk": "ssd"})
