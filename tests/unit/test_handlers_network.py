"""Which addresses the `http` handler may connect to: table-driven, with name resolution faked.

By default it refuses every address that is not public (loopback, private, link-local, multicast,
reserved, unspecified, and the IPv6 forms that embed such an IPv4 address); `--allow-network`
opens a network (CIDR) or a host name.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from conveyor.handlers import HandlerPolicy
from conveyor.handlers.network import BlockedAddressError, NetworkAccess, refusal

REFUSED = {
    "127.0.0.1": "loopback",
    "127.9.9.9": "loopback",
    "0.0.0.0": "unspecified",
    "10.1.2.3": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "not public",
    "192.0.0.1": "private",
    "192.0.2.1": "private",
    "198.18.0.1": "private",
    "224.0.0.1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fec0::1": "site-local",
    "fc00::1": "private",
    "fd00::1": "private",
    "ff02::1": "multicast",
    "2001:db8::1": "private",
    "100::1": "reserved",
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:0:7f00:1": "loopback",  # IPv4-translated
    "::7f00:1": "loopback",  # IPv4-compatible
    "64:ff9b::7f00:1": "loopback",  # NAT64
    "64:ff9b::a00:1": "private",
    "2002:7f00:1::1": "loopback",  # 6to4
    "2002:a9fe:a9fe::1": "link-local",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback",  # Teredo (client 127.0.0.1)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "private",  # Teredo (public ends), in 2001::/23
}
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "kind"), REFUSED.items(), ids=REFUSED.keys())
def test_addresses_that_are_not_public_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason, reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_fine(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("entries", "host", "address", "allowed"),
    [
        ((), "h", "127.0.0.1", False),
        (("127.0.0.1",), "h", "127.0.0.1", True),
        (("127.0.0.1",), "h", "127.0.0.2", False),
        (("127.0.0.0/8",), "h", "127.0.0.2", True),
        (("127.0.0.1",), "h", "::ffff:127.0.0.1", True),  # the mapped form is the same address
        (("10.0.0.0/8",), "h", "10.20.30.40", True),
        (("10.0.0.0/8",), "h", "169.254.169.254", False),
        (("fd00::/8",), "h", "fd12::1", True),
        (("::1",), "h", "::1", True),
        (("10.0.0.1/8",), "h", "10.9.9.9", True),  # host bits are ignored: the network is meant
        (("metadata.internal",), "metadata.internal", "169.254.169.254", True),
        (("Metadata.Internal.",), "metadata.internal", "169.254.169.254", True),
        (("metadata.internal",), "other.internal", "169.254.169.254", False),
        (("metadata.internal",), "metadata.internal.evil", "10.0.0.1", False),
        ((), "example.com", "93.184.216.34", True),
    ],
)
def test_allowed_networks_and_hosts(
    entries: tuple[str, ...], host: str, address: str, allowed: bool
) -> None:
    access = NetworkAccess.parse(entries)
    assert access.allows(host, ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize("entry", ["", "not a host", "10.0.0.0/33", "http://x", "a..b", "*", 5])
def test_invalid_entries_are_refused(entry: Any) -> None:
    with pytest.raises(ValueError, match="--allow-network"):
        HandlerPolicy(allow_networks=(entry,))


def test_policy_refuses_a_bare_string_and_keeps_a_tuple() -> None:
    with pytest.raises(TypeError, match="not a string"):
        HandlerPolicy(allow_networks="10.0.0.0/8")  # type: ignore[arg-type]
    policy = HandlerPolicy(allow_networks=["10.0.0.0/8", "db.internal"])  # type: ignore[arg-type]
    assert policy.allow_networks == ("10.0.0.0/8", "db.internal")
    hash(policy)


class FakeResolver:
    """socket.getaddrinfo for made-up names, counting the calls; numeric hosts pass through."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        self.calls.append(host)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in self.answers[host]
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    fake = FakeResolver(
        {
            "internal.test": ["10.0.0.5"],
            "mixed.test": ["93.184.216.34", "127.0.0.1"],
            "public.test": ["93.184.216.34", "2606:4700::1111"],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def test_a_name_is_resolved_once_and_every_address_checked(resolver: FakeResolver) -> None:
    with pytest.raises(BlockedAddressError, match=r"10\.0\.0\.5.*private.*--allow-network"):
        NetworkAccess().addresses("internal.test", 80)
    # One bad address among good ones refuses the name: the connection could land on either.
    with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1.*loopback"):
        NetworkAccess().addresses("mixed.test", 80)
    assert NetworkAccess().addresses("public.test", 80) == ["93.184.216.34", "2606:4700::1111"]
    assert resolver.calls == ["internal.test", "mixed.test", "public.test"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "0177.0.0.1", "::ffff:127.0.0.1"]
)
def test_every_spelling_of_loopback_is_refused(host: str) -> None:
    with pytest.raises(BlockedAddressError, match="loopback"):
        NetworkAccess().addresses(host, 80)


def test_the_mapped_form_is_connected_to_as_ipv4() -> None:
    access = NetworkAccess.parse(["127.0.0.1"])
    assert access.addresses("::ffff:127.0.0.1", 80) == ["127.0.0.1"]
