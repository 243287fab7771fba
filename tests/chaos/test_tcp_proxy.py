"""The fault proxy itself: it forwards faithfully, and its resets, partitions and delays are real."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from conveyor.testing import wait_until
from tests.helpers.tcp_proxy import TcpProxy


class EchoServer:
    """Echoes every byte back; counts the connections it accepted."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return


@pytest.fixture
def proxy() -> Iterator[tuple[TcpProxy, EchoServer]]:
    echo = EchoServer()
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        yield proxy, echo
    echo.listener.close()


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_it_forwards_both_ways_and_closes_gracefully(proxy: tuple[TcpProxy, EchoServer]) -> None:
    p, _ = proxy
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with connect(p) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert receive(sock, len(payload)) == payload
        sender.join()
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"", "the echo server's FIN comes through as EOF, not an RST"
    assert p.counts.bytes_forwarded == 2 * len(payload)


def test_a_reset_aborts_open_connections_with_an_rst(proxy: tuple[TcpProxy, EchoServer]) -> None:
    p, _ = proxy
    with connect(p) as sock:
        sock.sendall(b"ping")
        assert receive(sock, 4) == b"ping"
        assert p.reset() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert p.counts.connections_reset == 1


def test_a_reset_period_resets_new_connections_too(proxy: tuple[TcpProxy, EchoServer]) -> None:
    p, echo = proxy
    p.begin_resetting()
    with pytest.raises(ConnectionResetError):  # at connect, or at the first read
        sock = connect(p)
        try:
            sock.sendall(b"ping")
            sock.recv(1)
        finally:
            sock.close()
    p.end_resetting()
    with connect(p) as sock:
        sock.sendall(b"pong")
        assert receive(sock, 4) == b"pong"
    assert echo.accepted == 1, "the reset connection never reached the far side"
    assert p.counts.reset_periods == 1


def test_a_partition_holds_bytes_and_delivers_them_in_order_when_it_heals(
    proxy: tuple[TcpProxy, EchoServer],
) -> None:
    p, echo = proxy
    with connect(p) as sock:
        sock.sendall(b"before")
        assert receive(sock, 6) == b"before"
        p.partition()
        sock.sendall(b"during-1")
        sock.sendall(b"during-2")
        late = connect(p)  # opened during the partition
        late.sendall(b"late")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert echo.accepted == 1, "a connection opened in a partition waits for the heal"
        p.heal()
        sock.settimeout(5)
        assert receive(sock, 16) == b"during-1during-2"
        assert receive(late, 4) == b"late"
        late.close()
    assert echo.accepted == 2


def test_a_delay_delivers_each_chunk_late(proxy: tuple[TcpProxy, EchoServer]) -> None:
    p, _ = proxy
    with connect(p) as sock:
        p.set_delay(0.2)
        started = time.monotonic()
        sock.sendall(b"slow")
        assert receive(sock, 4) == b"slow"
        assert time.monotonic() - started >= 0.4, "delayed on the way there and back"
        p.set_delay(0)
        started = time.monotonic()
        sock.sendall(b"fast")
        assert receive(sock, 4) == b"fast"
        assert time.monotonic() - started < 0.2
    assert p.counts.delay_periods == 1


def test_stop_resets_what_is_left(proxy: tuple[TcpProxy, EchoServer]) -> None:
    p, _ = proxy
    sock = connect(p)
    sock.sendall(b"x")
    assert receive(sock, 1) == b"x"
    wait_until(lambda: p.open_connections == 1, 5, "the proxy to hold the connection")
    p.stop()
    with pytest.raises(ConnectionResetError):
        sock.recv(1)
    sock.close()
