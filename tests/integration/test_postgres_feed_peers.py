"""PostgreSQL only: a server notifies the others only while another one listens, and a server that
starts asks everything it holds to look again once the others must know of it.

Each server's listening connection names itself (postgres_feed.py); a server alone on its database
sends no NOTIFY, so that it does not spend its CPU telling nobody, and hearing itself back.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest

from conveyor.store import postgres_feed
from conveyor.store.postgres_feed import PostgresChangeFeed
from tests.helpers.postgres import postgres_url

__all__ = ["postgres_url"]

WAIT_S = 10.0


class Heard:
    """What a feed's listener delivered, with an event per kind of change."""

    def __init__(self) -> None:
        self.queues: set[str] = set()
        self.everything = threading.Event()
        self.some_queue = threading.Event()

    def __call__(self, ready_queues: set[str] | None, finished: Any, *, ordered: Any) -> None:
        if ready_queues is None:
            self.everything.set()
        else:
            self.queues |= ready_queues
            self.some_queue.set()


def _base(url: str) -> str:
    return url.split("?", 1)[0]


def _raw_listener(url: str, channel: str) -> psycopg.Connection[Any]:
    """A connection that hears the channel without being a server (no feed's name)."""
    conn = psycopg.connect(_base(url), autocommit=True)
    conn.execute(f'LISTEN "{channel}"')
    return conn


def _notifications(conn: psycopg.Connection[Any], timeout_s: float) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout_s, stop_after=1)]


@pytest.mark.postgres
def test_a_server_alone_notifies_nobody_and_a_second_server_hears_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_feed, "PEER_CHECK_S", 0.0)  # look at every publish
    channel = f"conveyor_test_{uuid.uuid4().hex[:8]}"
    raw = _raw_listener(postgres_url, channel)
    alone = PostgresChangeFeed(_base(postgres_url), channel)
    alone.start(Heard())
    other: PostgresChangeFeed | None = None
    try:
        alone.publish({"q1"}, set())
        # A NOTIFY would reach the plain listener; the feed alone sent none.
        assert _notifications(raw, 1.0) == []

        heard = Heard()
        other = PostgresChangeFeed(_base(postgres_url), channel)
        other.start(heard)
        for _ in range(int(WAIT_S / 0.1)):  # until the second one's listener is connected
            alone.publish({"q2"}, set())
            if heard.some_queue.wait(0.1):
                break
        assert heard.queues == {"q2"}, "the second server hears the first once it listens"
        assert _notifications(raw, 1.0) != [], "and the NOTIFYs go out again"
    finally:
        alone.stop()
        if other is not None:
            other.stop()
        raw.close()


@pytest.mark.postgres
def test_a_server_that_starts_wakes_everything_once_the_others_know_of_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_feed, "CATCH_UP_S", 0.2)
    heard = Heard()
    feed = PostgresChangeFeed(_base(postgres_url), f"conveyor_test_{uuid.uuid4().hex[:8]}")
    feed.start(heard)
    try:
        assert heard.everything.wait(WAIT_S), "no wake of everything after the catch-up time"
    finally:
        feed.stop()
