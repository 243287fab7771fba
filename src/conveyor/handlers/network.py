"""Which addresses the `http` handler may connect to, checked on the address it connects to.

A task that can make a worker fetch any URL can reach what only the worker can: its loopback
services, the cloud metadata endpoint (169.254.169.254), the private network behind it. So by
default the handler connects only to public addresses, and refuses loopback, private, link-local,
site-local, multicast, reserved, unspecified and other non-public addresses, including the IPv6
forms that carry such an IPv4 address (IPv4-mapped, -translated and -compatible, NAT64, 6to4,
Teredo). The operator opens a network or a host with `--allow-network CIDR|HOST`.

The check is made where the connection is made (`GuardedBackend.connect_tcp`, the network backend
of every connection the handler opens, redirects included): the host name is resolved once, every
address it resolves to is checked, and the connection goes to a checked address, so a name cannot
resolve to a public address for the check and to a private one for the connection. The URL, the
`Host` header and the TLS server name stay those of the original host.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")

# IPv6 ranges whose last 32 bits are an IPv4 address the packets end up at.
_EMBEDDING_LAST_32_BITS = (
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64, local use
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(PermissionError):
    """The `http` handler refused to connect: the address is not public and not allowed."""


def refusal(address: IPAddress) -> str | None:
    """Why the default policy refuses `address` ("a loopback address"), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal(address.ipv4_mapped)
        if address.is_loopback or address.is_unspecified:  # ::1 and :: are no IPv4 in disguise
            return f"a {'loopback' if address.is_loopback else 'unspecified'} address"
        for embedded in _embedded_ipv4(address):
            reason = refusal(embedded)
            if reason is not None:
                return f"{reason} in an IPv6 form ({embedded})"
        if address in _NAT64:
            return None  # NAT64 of a public IPv4 address: how IPv6-only networks reach it
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "an address that is not public"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in network for network in _EMBEDDING_LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is; any other as it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")


def parse_entry(entry: object) -> IPNetwork | str:
    """An `--allow-network` entry: a network (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`) or a host name."""
    if not isinstance(entry, str):
        raise ValueError(f"--allow-network takes a CIDR or a host name, got {entry!r}")
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = _host_key(text)
    # A last label of digits is no DNS name but an address spelled otherwise ("10", "127.1").
    if "/" in text or ":" in text or not _HOST_NAME.match(name) or name.split(".")[-1].isdigit():
        raise ValueError(
            f"invalid --allow-network {entry!r}: use a network such as 10.0.0.0/8 or "
            "127.0.0.1, or a host name such as db.internal"
        )
    return name


@dataclass(frozen=True, slots=True)
class NetworkAccess:
    """The networks and host names a worker's operator allowed beyond the public addresses."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, entries: Iterable[object]) -> NetworkAccess:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            parsed = parse_entry(entry)
            if isinstance(parsed, str):
                hosts.add(parsed)
            else:
                networks.append(parsed)
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether a connection to `address`, resolved from `host`, may be made."""
        if _host_key(host) in self.hosts:
            return True
        plain = _plain(address)
        if any(plain in network for network in self.networks):
            return True
        return refusal(plain) is None

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: resolved once, each one checked.

        Raises BlockedAddressError if any of them is refused (the connection could land on any),
        httpcore.ConnectError if the name does not resolve.
        """
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        found: list[str] = []
        for _family, _type, _proto, _name, sockaddr in answers:
            text = cast(str, sockaddr[0])
            address = ipaddress.ip_address(text.partition("%")[0])
            if not self.allows(host, address):
                shown = _plain(address)
                what = "" if str(shown) == host else f" ({host!r})"
                raise BlockedAddressError(
                    f"refusing to connect to {shown}{what}: {refusal(shown)}; a worker reaches "
                    "loopback, private, link-local and other non-public addresses only when its "
                    f"operator allows them: start it with --allow-network {shown} (or a network "
                    "holding it, or the host name)"
                )
            plain = str(_plain(address)) if "%" not in text else text
            if plain not in found:
                found.append(plain)
        return found


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, connecting only to addresses NetworkAccess allows."""

    def __init__(self, access: NetworkAccess) -> None:
        self._access = access
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._access.addresses(host, port):
            try:  # an address literal: connecting resolves nothing again
                return self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next address, as socket.create_connection would
        if failure is None:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the http handler does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a pool whose every connection goes through GuardedBackend."""

    def __init__(self, access: NetworkAccess) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend: build the pool it would, with the guarded one.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(access)
        )
