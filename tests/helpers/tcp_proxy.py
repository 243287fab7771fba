"""A TCP proxy that breaks the network on command: resets, partitions and delays.

Put it between two parties (a server and its PostgreSQL, a worker and its server) and the link
between them fails the way a real network fails, while both parties stay the real programs:

- **reset**: every open connection is aborted with an RST (SO_LINGER 0, then close), on both
  sides, as a middlebox or a rebooted peer would; during a reset period, new connections are
  reset as soon as they are accepted.
- **partition**: nothing is forwarded in either direction, but every connection stays open and
  no byte is lost: what was sent during the partition arrives, in order, when it heals, as TCP
  retransmission would deliver it. A connection opened during the partition reaches the far side
  only once it heals. (Dropping bytes mid-stream would corrupt the stream, which no network does
  to a TCP connection.)
- **delay**: every chunk is delivered `delay_s` after it was read, in order.

The proxy runs an asyncio loop in a daemon thread; its methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK_BYTES = 64 * 1024
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST, not a FIN


@dataclass
class ProxyCounts:
    """What the proxy did: faults by kind, and the traffic they hit."""

    connections: int = 0
    connections_reset: int = 0
    reset_periods: int = 0
    partitions: int = 0
    delay_periods: int = 0
    bytes_forwarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(eq=False)
class _Link:
    """One proxied connection: the accepted side and, once connected, the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    aborted: bool = False

    def abort(self) -> None:
        self.aborted = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort_with_rst(writer)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`.

    ```python
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.start()                 # proxy.port is now listening
    proxy.partition(); ...; proxy.heal()
    proxy.stop()
    ```
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.port = 0
        self.counts = ProxyCounts()
        self._delay_s = 0.0
        self._resetting = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None
        self._healed: asyncio.Event | None = None

    # ---- life ----------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close the listener and reset every connection; idempotent."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- faults --------------------------------------------------------------------------------

    def reset(self) -> int:
        """Abort every open connection with an RST; returns how many were aborted."""
        return self._call(self._reset_all())

    def begin_resetting(self) -> int:
        """Reset every open connection, and every new one until end_resetting()."""
        self._resetting = True
        self.counts.reset_periods += 1
        return self.reset()

    def end_resetting(self) -> None:
        self._resetting = False

    def partition(self) -> None:
        """Stop forwarding, in both directions, until heal(); connections stay open."""
        self._call(self._set_healed(False))
        self.counts.partitions += 1

    def heal(self) -> None:
        self._call(self._set_healed(True))

    def set_delay(self, delay_s: float) -> None:
        """Deliver each chunk read from now on `delay_s` late (0: at once)."""
        if delay_s > 0 and self._delay_s == 0:
            self.counts.delay_periods += 1
        self._delay_s = delay_s

    @property
    def open_connections(self) -> int:
        return sum(1 for link in self._links if not link.aborted)

    # ---- the loop's side -----------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._healed = asyncio.Event()
        self._healed.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _set_healed(self, healed: bool) -> None:
        assert self._healed is not None
        if healed:
            self._healed.set()
        else:
            self._healed.clear()

    async def _reset_all(self) -> int:
        links = [link for link in self._links if not link.aborted]
        for link in links:
            link.abort()
        self.counts.connections_reset += len(links)
        return len(links)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        link = _Link(writer)
        if self._resetting:
            link.abort()
            self.counts.connections_reset += 1
            return
        self._links.add(link)
        try:
            assert self._healed is not None
            # A connection opened during a partition reaches the far side once it heals, as a
            # retransmitted SYN would.
            await self._healed.wait()
            if link.aborted:
                return  # reset while it waited
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                link.abort()  # refused upstream: refused here too
                return
            link.upstream = up_writer
            if link.aborted:
                link.abort()
                return
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
            # Both sides said goodbye (or one was reset, which aborted both already).
            writer.close()
            up_writer.close()
        except asyncio.CancelledError:
            # The proxy is stopping. Ended here, not raised: asyncio's stream server would log
            # the cancellation of its connection callback as an error.
            link.abort()
        except BaseException:
            link.abort()
            raise
        finally:
            self._links.discard(link)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Forward one direction: read as it comes, deliver each chunk when due and healed."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(due, writer, link))
        try:
            while True:
                data = await reader.read(CHUNK_BYTES)
                due.put_nowait((loop.time() + self._delay_s, data))
                if not data:
                    break  # EOF: delivered after everything read before it
            await deliver
        except (ConnectionError, OSError):
            link.abort()  # a reset on one side is a reset of the whole link
        finally:
            deliver.cancel()

    async def _deliver(
        self, due: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        loop = asyncio.get_running_loop()
        assert self._healed is not None
        try:
            while True:
                at, data = await due.get()
                if (wait_s := at - loop.time()) > 0:
                    await asyncio.sleep(wait_s)
                await self._healed.wait()
                if link.aborted:
                    return
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                self.counts.bytes_forwarded += len(data)
        except (ConnectionError, OSError):
            link.abort()
