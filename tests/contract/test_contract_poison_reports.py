"""Reports no store can keep, on every store: the rest of the batch is recorded, the task whose
report was refused ends as a failed attempt that says why, and text that one store would take
and the other refuse is stored the same way on both."""

from __future__ import annotations

from conveyor.core.states import Outcome, TaskState
from conveyor.engine import Report
from tests.contract.conftest import Harness


def test_a_report_the_store_refuses_is_isolated_and_fails_its_task(h: Harness) -> None:
    first, second, third = h.submit(name="a"), h.submit(name="b"), h.submit(name="c")
    w = h.worker("w")
    leases = {a.task_id: a for a in h.lease(w, 3)}
    unstorable = {"text": "lone \ud800 surrogate"}  # has no UTF-8 form: no store can keep it
    acks = h.engine.report(
        w.id,
        [
            Report(first.id, leases[first.id].token, Outcome.SUCCEEDED, result="fine"),
            Report(second.id, leases[second.id].token, Outcome.SUCCEEDED, result=unstorable),
            Report(third.id, leases[third.id].token, Outcome.FAILED, error="plain failure"),
        ],
    )
    assert [a.accepted for a in acks] == [True, True, True]
    assert [a.state for a in acks] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.FAILED]
    assert h.get(first.id).result == "fine"
    refused = h.get(second.id)
    assert refused.state is TaskState.FAILED and refused.result is None
    assert refused.error is not None and "could not store" in refused.error
    assert h.get(third.id).error == "plain failure"
    (attempt,) = h.engine.attempts(second.id)
    assert attempt.outcome is Outcome.FAILED and attempt.error == refused.error


def test_text_one_store_would_refuse_is_stored_the_same_on_every_store(h: Harness) -> None:
    """A NUL in an error or in captured output: SQLite could keep it, PostgreSQL cannot. Both
    keep the text with U+FFFD in its place, and the report is never refused for it."""
    task = h.submit()
    w = h.worker("w")
    lease = h.lease_one(w)
    state = h.engine.report_one(
        w.id,
        Report(
            task.id,
            lease.token,
            Outcome.FAILED,
            error="bad\x00msg",
            traceback="Traceback\x00",
            stdout_tail="out\x00",
            stderr_tail="err\ud800",
        ),
    )
    assert state is TaskState.FAILED
    stored = h.get(task.id)
    assert stored.error == "bad\ufffdmsg"
    (attempt,) = h.engine.attempts(task.id)
    assert (attempt.error, attempt.traceback) == ("bad\ufffdmsg", "Traceback\ufffd")
    assert (attempt.stdout_tail, attempt.stderr_tail) == ("out\ufffd", "err\ufffd")
