"""Why a task is not running, on every store: one test per reason (conveyor.core.why), and the
count of tasks no live worker could ever take."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conveyor.core.capabilities import Capabilities
from conveyor.core.limiting import Limit
from conveyor.core.models import Worker
from conveyor.core.spec import RetryPolicy
from conveyor.core.states import TaskState
from conveyor.core.why import WaitCode, WaitReason, WhyAnswer
from conveyor.errors import NotFoundError
from conveyor.handlers import HandlerPolicy
from conveyor.handlers.registry import advertised
from tests.contract.conftest import Harness

PLAIN = advertised(HandlerPolicy())


def _worker(
    h: Harness,
    name: str = "w1",
    *,
    capabilities: Capabilities | None = PLAIN,
    concurrency: int = 1,
    **fields: Any,
) -> Worker:
    return h.engine.register_worker(
        name=name,
        host="test-host",
        pid=1000,
        concurrency=concurrency,
        capabilities=capabilities,
        **fields,
    )


def _only(answer: WhyAnswer, code: WaitCode) -> WaitReason:
    found = [r for r in answer.reasons if r.code is code]
    assert len(found) == 1, f"expected one {code.value} reason, got {answer.reasons}"
    return found[0]


def _codes(answer: WhyAnswer) -> list[WaitCode]:
    return [r.code for r in answer.reasons]


def test_a_task_waiting_for_dependencies_names_those_not_done(h: Harness) -> None:
    _worker(h)
    first, second, last = h.submit_batch(
        {"handler": "echo", "name": "first"},
        {"handler": "echo", "name": "second"},
        {"handler": "echo", "name": "last", "depends_on": ["first", "second"]},
    )
    answer = h.engine.why(last.id)
    assert (answer.state, answer.waiting, answer.unschedulable) == (TaskState.PENDING, True, False)
    assert _codes(answer) == [WaitCode.DEPENDENCIES]
    assert _only(answer, WaitCode.DEPENDENCIES).tasks == [first.id, second.id]
    w = h.engine.workers()[0]
    h.succeed(w, h.lease_one(w))  # `first`, submitted first
    assert _only(h.engine.why(last.id), WaitCode.DEPENDENCIES).tasks == [second.id]


def test_a_task_not_yet_due_says_until_when(h: Harness) -> None:
    _worker(h)
    task = h.submit("echo", delay_s=60)
    reason = _only(h.engine.why(task.id), WaitCode.START_TIME)
    assert reason.until == h.clock.now() + timedelta(seconds=60)


def test_a_retry_waiting_out_its_backoff_says_until_when(h: Harness) -> None:
    w = _worker(h)
    task = h.submit("echo", max_retries=1, retry=RetryPolicy(backoff_s=30, jitter=0))
    h.fail(w, h.lease_one(w))
    reason = _only(h.engine.why(task.id), WaitCode.BACKOFF)
    assert reason.until == h.clock.now() + timedelta(seconds=30)
    assert h.engine.why(task.id).reasons[0].code is WaitCode.BACKOFF


def test_a_task_whose_time_has_come_waits_for_the_timers(h: Harness) -> None:
    _worker(h)
    task = h.submit("echo", delay_s=5)
    h.clock.advance(10)
    assert _codes(h.engine.why(task.id)) == [WaitCode.DUE]


@pytest.mark.parametrize("scope", ["queue", "all"])
def test_a_task_of_a_paused_queue_or_cluster_says_so(h: Harness, scope: str) -> None:
    _worker(h, queues=["q"])
    task = h.submit("echo", queue="q")
    until = h.clock.now() + timedelta(minutes=5)
    if scope == "queue":
        h.engine.pause_queue("q", until=until)
    else:
        h.engine.pause_all(until=until)
    reason = h.engine.why(task.id).reasons[0]
    assert (reason.code, reason.pause, reason.until) == (
        WaitCode.PAUSED,
        "q" if scope == "queue" else "*",
        until,
    )
    h.engine.pause_queue("other")
    h.clock.set(until)
    assert WaitCode.PAUSED not in _codes(h.engine.why(task.id)), "only pauses that hold"


def test_a_task_no_live_worker_serves_is_unschedulable(h: Harness) -> None:
    task = h.submit("echo", queue="lonely")
    answer = h.engine.why(task.id)
    assert _codes(answer) == [WaitCode.NO_WORKER] and answer.unschedulable
    _worker(h, "elsewhere", queues=["other"])
    draining = _worker(h, "draining", queues=["lonely"])
    h.engine.drain_workers(ids=[draining.id])
    answer = h.engine.why(task.id)
    assert _codes(answer) == [WaitCode.NO_WORKER]
    assert "1 draining" in answer.reasons[0].message
    assert h.engine.unschedulable_count() == 1
    _worker(h, "serves", queues=["lonely"])
    assert not h.engine.why(task.id).unschedulable
    assert h.engine.unschedulable_count() == 0


def test_a_task_no_live_worker_can_run_names_what_each_lacks(h: Harness) -> None:
    plain = _worker(h, "plain", resources={"cpu": 4})
    shell = h.submit("shell", args=["true"])
    gpu = h.submit("echo", resources={"gpu": 1})
    eu = h.submit("echo", require={"zone": "eu"})
    fine = h.submit("echo")
    pending = h.submit("shell", args=["true"], delay_s=60)
    for task, lack in [
        (shell, "--allow shell"),
        (gpu, "resource gpu=1"),
        (eu, "label zone=eu"),
    ]:
        answer = h.engine.why(task.id)
        reason = _only(answer, WaitCode.NO_CAPABLE_WORKER)
        assert answer.unschedulable
        assert list(reason.workers) == [plain.id]
        assert any(lack in gap for gap in reason.workers[plain.id]), reason
        assert lack in reason.message
    assert not h.engine.why(fine.id).unschedulable
    assert _codes(h.engine.why(pending.id)) == [WaitCode.START_TIME, WaitCode.NO_CAPABLE_WORKER]
    assert h.engine.unschedulable_count() == 4
    _worker(h, "gpu-eu", resources={"gpu": 2}, labels={"zone": "eu"})
    assert h.engine.unschedulable_count() == 2, "the shell tasks still wait"


def test_a_task_behind_busy_workers_says_how_many_come_first(h: Harness) -> None:
    w = _worker(h, concurrency=1)
    h.submit("echo", name="running")
    h.lease_one(w)
    urgent = h.submit("echo", priority=5)
    same = h.submit("echo", priority=1)
    task = h.submit("echo", priority=1)
    h.submit("echo", priority=0)
    reason = _only(h.engine.why(task.id), WaitCode.WORKERS_BUSY)
    assert (reason.busy, reason.ahead) == (1, 2)
    assert "2 queued tasks" in reason.message
    assert _only(h.engine.why(urgent.id), WaitCode.WORKERS_BUSY).ahead == 0
    assert _only(h.engine.why(same.id), WaitCode.WORKERS_BUSY).ahead == 1


def test_a_task_a_free_worker_can_take_is_ready(h: Harness) -> None:
    _worker(h, "busy-one", concurrency=1)
    free = _worker(h, "free-one", concurrency=2)
    h.submit("echo", name="running")
    h.lease_one(free)
    task = h.submit("echo")
    answer = h.engine.why(task.id)
    assert _codes(answer) == [WaitCode.READY] and not answer.unschedulable
    assert _only(answer, WaitCode.READY).ahead == 0


def test_running_and_finished_tasks_say_nothing_holds_them(h: Harness) -> None:
    w = _worker(h)
    task = h.submit("echo")
    lease = h.lease_one(w)
    running = h.engine.why(task.id)
    assert (running.waiting, _codes(running)) == (False, [WaitCode.RUNNING])
    assert list(running.reasons[0].workers) == [w.id]
    h.succeed(w, lease)
    assert _codes(h.engine.why(task.id)) == [WaitCode.FINISHED]


def test_why_for_an_unknown_task_is_not_found(h: Harness) -> None:
    with pytest.raises(NotFoundError):
        h.engine.why("no-such-task")


def test_a_task_held_by_a_full_limit_names_it(h: Harness) -> None:
    w = _worker(h, concurrency=4)
    h.engine.set_limit(Limit(name="db", concurrency=1))
    h.submit("echo", limits=["db"])
    h.lease_one(w)
    first = h.submit("echo", limits=["db"])
    second = h.submit("echo", limits=["db"])
    h.lease(w)  # finds the key full: both wait in its line
    answer = h.engine.why(second.id)
    assert _codes(answer) == [WaitCode.LIMIT], "held back, it is not a lease away"
    reason = answer.reasons[0]
    assert (reason.limit, reason.ahead, reason.until) == ("db", 1, None)
    assert "1 running, of 1 allowed" in reason.message
    assert _only(h.engine.why(first.id), WaitCode.LIMIT).ahead == 0


def test_a_task_held_by_a_rate_says_when_the_next_may_start(h: Harness) -> None:
    w = _worker(h, concurrency=4)
    h.engine.set_limit(Limit(name="api", rate=1, per_s=60))
    h.submit("echo", limits=["api"])
    h.lease_one(w)
    task = h.submit("echo", limits=["api"])
    reason = _only(h.engine.why(task.id), WaitCode.LIMIT)
    assert reason.until == h.clock.now() + timedelta(seconds=60)
