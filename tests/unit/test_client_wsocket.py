"""The client WebSocket connects directly: a server the environment sends through a forward proxy
is refused as having no persistent connection (the session then uses REST, which httpx sends
through the proxy), and NO_PROXY is honoured."""

from __future__ import annotations

import socket

import pytest
from websockets import ConnectionClosed
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from conveyor.client.wsocket import BlockingWebSocket, ProxyInTheWay


def _connect(url: str) -> BlockingWebSocket:
    return BlockingWebSocket.connect(
        url, headers={}, subprotocols=[], max_size=1024, open_timeout=1.0
    )


@pytest.fixture
def proxy_everything(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    return monkeypatch


def test_a_proxied_server_is_not_connected_to_directly(
    proxy_everything: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ProxyInTheWay):
        _connect("ws://conveyor.example:8000/api/v1/stream")


def test_a_server_no_proxy_names_is_connected_to_directly(
    proxy_everything: pytest.MonkeyPatch,
) -> None:
    proxy_everything.setenv("no_proxy", "127.0.0.1")
    proxy_everything.setenv("NO_PROXY", "127.0.0.1")
    # Port 9 (discard) is closed here: the direct attempt is refused, which is what shows it
    # was made.
    with pytest.raises(ConnectionRefusedError):
        _connect("ws://127.0.0.1:9/api/v1/stream")


def _open_pair() -> tuple[BlockingWebSocket, socket.socket]:
    """A client WebSocket past its handshake, and the server's end of its socket."""
    ours, theirs = socket.socketpair()
    protocol = ClientProtocol(parse_uri("ws://conveyor.example/api/v1/stream"), state=State.OPEN)
    return BlockingWebSocket(ours, protocol), theirs


def test_a_send_on_a_connection_the_peer_dropped_says_closed() -> None:
    # What SyncStream retries on a new connection: never a bare socket error or a crash.
    connection, theirs = _open_pair()
    theirs.close()
    with pytest.raises(ConnectionClosed):
        connection.send(b"first")
        connection.send(b"second")  # the first may still fit in the socket's buffer
    with pytest.raises(ConnectionClosed):
        connection.send(b"later")
    connection.close()


def test_messages_received_before_the_close_are_delivered_then_the_close() -> None:
    connection, theirs = _open_pair()
    server = ServerProtocol()
    server.state = State.OPEN
    server.send_binary(b"an answer")
    server.send_close(1000, "bye")
    theirs.sendall(b"".join(server.data_to_send()))
    theirs.close()
    assert connection.recv(timeout=1.0) == b"an answer"
    with pytest.raises(ConnectionClosed):
        connection.recv(timeout=1.0)
    connection.close()


def test_recv_waits_no_longer_than_asked() -> None:
    connection, theirs = _open_pair()
    with pytest.raises(TimeoutError):
        connection.recv(timeout=0.05)
    connection.close()
    theirs.close()


def test_a_send_after_the_server_said_goodbye_says_closed() -> None:
    # The server's close frame came, its end of the socket still open: the connection is
    # closing, and a send must say closed (what SyncStream retries), not fail some other way.
    connection, theirs = _open_pair()
    server = ServerProtocol()
    server.state = State.OPEN
    server.send_close(1012, "service restart")
    theirs.sendall(b"".join(server.data_to_send()))
    connection.poll()
    with pytest.raises(ConnectionClosed):
        connection.send(b"a call")
    connection.close()
    theirs.close()
