"""The SSRF policy as a table of addresses and spellings."""

from __future__ import annotations

import ipaddress

import pytest

from service import netguard


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (embedded in IPv6)"),
        ("::ffff:10.0.0.1", "private (embedded in IPv6)"),
        ("64:ff9b::a9fe:a9fe", "link-local (embedded in IPv6)"),
        ("2002:7f00:1::", "loopback (embedded in IPv6)"),
        ("::127.0.0.1", "loopback (embedded in IPv6)"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    found = netguard.forbidden_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason.split(" (")[0] in found
    assert found.endswith("(embedded in IPv6)") == reason.endswith("(embedded in IPv6)")


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert netguard.forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("deadbeef.example", None),
        ("abc", None),
    ],
)
def test_ip_literal_spellings(spelling: str, expected: str | None) -> None:
    parsed = netguard.parse_ip_literal(spelling)
    assert parsed == (ipaddress.ip_address(expected) if expected else None)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1/x", "loopback"),
        ("http://0x7f000001/x", "loopback"),
        ("http://2130706433/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://localhost:8000/", "loopback name"),
        ("http://api.localhost/", "loopback name"),
        ("http://user:pass@example.com/", "credentials"),
        ("gopher://example.com/", "HTTPS or HTTP"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/", "valid URL"),
    ],
)
def test_check_url_refusals(url: str, fragment: str) -> None:
    with pytest.raises(netguard.UrlRejected) as info:
        netguard.check_url(url, netguard.Allowlist())
    assert fragment in str(info.value)


def test_allowlist_entries() -> None:
    allow = netguard.Allowlist(["127.0.0.1", "10.0.0.0/8", "hooks.internal", "[::1]"])
    netguard.check_url("http://127.0.0.1:9/x", allow)
    netguard.check_url("http://10.9.8.7/x", allow)
    netguard.check_url("http://[::1]:80/x", allow)
    netguard.check_address("hooks.internal", ipaddress.ip_address("192.168.0.5"), allow)
    with pytest.raises(netguard.UrlRejected):
        netguard.check_url("http://192.168.0.1/x", allow)
    everything = netguard.Allowlist(["*"])
    netguard.check_url("http://192.168.0.1/x", everything)


def test_public_url_passes() -> None:
    parts = netguard.check_url("https://hooks.example.com/cb?x=1", netguard.Allowlist())
    assert parts.hostname == "hooks.example.com"
