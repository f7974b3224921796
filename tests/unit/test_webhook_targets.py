"""Where a webhook may go: globally routable addresses; loopback and private
networks only when allowed; link-local and every other non-global range never;
IPv6 forms judged by the IPv4 address they reach. IP literals only: no DNS."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mochi_common.webhook_targets import checked_addresses, refusal

from .events import pure

FLAGS = [(False, False), (True, False), (False, True), (True, True)]
GLOBAL = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
LOOPBACK = ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"]
PRIVATE = ["10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1", "100.127.255.254",
           "fc00::1", "fd12:3456::1", "::ffff:10.0.0.1", "::ffff:100.64.0.1"]
NEVER = ["169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254",  # link-local
         "0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0",  # unspecified, "this network"
         "224.0.0.1", "239.255.255.250", "233.252.0.1", "ff02::1", "ff0e::1",  # multicast
         "240.0.0.1", "255.255.255.255",  # reserved, broadcast
         "192.0.0.1", "192.0.0.170", "198.18.0.1", "198.19.255.254", "::ffff:198.18.0.1",  # special purpose
         "192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1",  # documentation
         "2001::1", "100::1", "::7f00:1", "::ffff:0:7f00:1",  # Teredo, discard, deprecated forms
         "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2002:a00:1::"]  # translated to non-global


@pytest.mark.parametrize("address", GLOBAL)
def test_global_addresses_always_allowed(address):
    assert all(refusal(ipaddress.ip_address(address), *flags) is None for flags in FLAGS)


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_only_with_allow_loopback(address):
    ip = ipaddress.ip_address(address)
    assert "loopback" in (refusal(ip, False, False) or "") and "loopback" in (refusal(ip, False, True) or "")
    assert refusal(ip, True, False) is None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_and_shared_space_only_with_allow_private(address):
    ip = ipaddress.ip_address(address)
    assert "private" in (refusal(ip, False, False) or "") and "private" in (refusal(ip, True, False) or "")
    assert refusal(ip, False, True) is None


@pytest.mark.parametrize("address", NEVER)
def test_never_whatever_the_settings(address):
    assert all(refusal(ipaddress.ip_address(address), *flags) is not None for flags in FLAGS)


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@pure
@given(ipv4, st.sampled_from(FLAGS))
def test_a_mapped_address_is_judged_as_the_ipv4_one(ip, flags):
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert (refusal(mapped, *flags) is None) == (refusal(ip, *flags) is None)


@pure
@given(st.one_of(ipv4, st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)))
def test_what_no_setting_opens_is_global(ip):
    if refusal(ip, False, False) is None:
        assert ip.is_global and not ip.is_multicast
    if refusal(ip, True, True) is None and not ip.is_global:
        inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        assert inner.is_loopback or inner.is_private or inner in ipaddress.ip_network("100.64.0.0/10")


def checked(url: str, loopback: bool = False, private: bool = False) -> tuple[str | None, list[str]]:
    return asyncio.run(checked_addresses(url, loopback, private))


def test_a_literal_url_is_checked_without_resolving():
    assert checked("https://8.8.8.8/hook") == (None, ["8.8.8.8"])
    assert checked("http://[2606:4700:4700::1111]:8080/x") == (None, ["2606:4700:4700::1111"])
    assert checked("http://127.0.0.1:9/x", loopback=True) == (None, ["127.0.0.1"])
    assert checked("http://100.64.0.1/x") == ("100.64.0.1 is a private address", [])
    assert checked("http://198.18.0.1/x", True, True) == ("198.18.0.1 is not a globally routable address", [])
    assert checked("http://[fe80::1]/x", True, True) == ("fe80::1 is a link-local address", [])
