"""SSRF policy: which destinations Callboard may send requests to (pure functions).

Every URL Callboard calls on a user's behalf — webhook endpoints, replyUrls, input
URLs it fetches — is checked twice: the literal URL when it is accepted (so an obvious
``http://127.0.0.1/`` is a 400 at once), and the **resolved** address at connect time
on every attempt (DNS can change between the two; see ``service.outbound``).

Refused: loopback, private, link-local (169.254.169.254 included), CGNAT, multicast,
reserved, unspecified, IPv6 ULA/link-local/site-local, and IPv4 addresses hidden in
IPv6 (mapped, NAT64, 6to4, Teredo). Odd IPv4 spellings (``0x7f000001``,
``2130706433``, ``0177.0.0.1``, ``127.1``) are read the way the C resolver reads them.

An allowlist (``CALLBOARD_ALLOW_PRIVATE_TARGETS``) lets self-hosters and tests reach
chosen private addresses: entries are IPs, CIDR networks, host names, or ``*``.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class UrlRejected(ValueError):
    """The URL may not be used as a destination; the message says why."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    # IPv4-compatible (deprecated ::a.b.c.d)
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None if it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = forbidden_reason(inner)
            return f"{reason} (embedded in IPv6)" if reason else None
        if ip in _SITE_LOCAL:
            return "a site-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, or None for a real host name.

    Accepts IPv6 with or without brackets and every IPv4 spelling ``inet_aton``
    accepts (decimal, hex, octal, shortened), because that is what resolvers do.
    """
    text = host.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # zone id
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


class Allowlist:
    """Private destinations an operator has allowed (``*`` allows every one)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.any = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry.rstrip("."))

    def allows(self, host: str, ip: IPAddress | None) -> bool:
        if self.any:
            return True
        if host.lower().rstrip(".").strip("[]") in self.hosts:
            return True
        return ip is not None and any(ip in net for net in self.networks)


def check_address(host: str, ip: IPAddress, allow: Allowlist) -> None:
    """Raise :class:`UrlRejected` unless ``host`` resolving to ``ip`` may be contacted."""
    reason = forbidden_reason(ip)
    if reason is not None and not allow.allows(host, ip):
        raise UrlRejected(f"destination {host} resolves to {ip}, {reason}")


def _is_localhost_name(host: str) -> bool:
    """``localhost`` and its subdomains, also spelled as absolute names (``localhost.``)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_url(
    url: str, allow: Allowlist, *, schemes: tuple[str, ...] = ("https", "http")
) -> urllib.parse.SplitResult:
    """Check a destination URL as written (before any DNS); return it parsed.

    Refuses other schemes, embedded credentials, missing hosts, literal forbidden
    addresses and ``localhost`` names. Names that *resolve* to forbidden addresses
    are caught at connect time.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in schemes:
        raise UrlRejected(f"must be an {' or '.join(s.upper() for s in schemes)} URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRejected("must not contain credentials")
    host = parts.hostname or ""
    if not host:
        raise UrlRejected("has no host")
    if port == 0:
        raise UrlRejected("has an invalid port")
    ip = parse_ip_literal(host)
    if ip is not None:
        check_address(host, ip, allow)
    elif _is_localhost_name(host) and not allow.allows(host, None):
        raise UrlRejected(f"destination {host} is a loopback name")
    return parts
