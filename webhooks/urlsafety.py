"""Which endpoint URLs we are willing to POST to (SSRF protection).

An endpoint URL is chosen by whoever holds a `webhooks:manage` key; without these checks it could point
our workers at the loopback interface, the private network, or a cloud metadata service and read the
answers back through the delivery log. So a URL must resolve only to globally routable addresses, and
the check runs twice: when the endpoint is saved (a clear 400) and at every send, where the connection
is then made to the very address that was checked (no second DNS lookup an attacker could rebind).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not already covered by "not globally routable" on every network layout.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)


class UnsafeUrl(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: the checked address, and what to say in Host and TLS SNI."""

    scheme: str
    host: str
    port: int
    address: str
    path: str  # path and query, as sent in the request line


def address_refusal(address: IPAddress) -> str | None:
    """Why this address may not be a webhook target, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return address_refusal(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return "a private address"
    return None


def _split(url: str) -> SplitResult:
    if len(url) > 2048:
        raise UnsafeUrl("The URL is longer than 2048 characters.", code="url_invalid")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UnsafeUrl("The URL is not valid.", code="url_invalid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("The URL must be an absolute http(s) URL with a host.", code="url_invalid")
    if parts.username is not None or parts.password is not None:
        # The URL is shown in lists and logs: credentials do not belong in it.
        raise UnsafeUrl("The URL must not contain credentials.", code="url_invalid")
    if parts.fragment:
        raise UnsafeUrl("The URL must not contain a fragment.", code="url_invalid")
    if parts.scheme == "http" and not (settings.DEBUG or settings.WEBHOOKS_ALLOW_HTTP):
        raise UnsafeUrl("The URL must use https (set WEBHOOKS_ALLOW_HTTP=true to allow http).", code="url_insecure")
    return parts


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"The host {host!r} does not resolve.", code="url_unresolvable") from None
    out: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    if not out:
        raise UnsafeUrl(f"The host {host!r} does not resolve.", code="url_unresolvable")
    return out


def url_check(url: str) -> None:
    """The check made when an endpoint is saved. With private addresses allowed there is nothing to look
    up, so no DNS query is made (the name may only resolve where the workers run)."""
    _split(url)
    if not settings.WEBHOOKS_ALLOW_PRIVATE_URLS:
        url_target(url)


def url_target(url: str) -> Target:
    """Check a URL and return where to connect. Every address the host resolves to must be allowed (an
    attacker could otherwise add one public address to a private one and win half the time)."""
    parts = _split(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not settings.WEBHOOKS_ALLOW_PRIVATE_URLS:
        for address in addresses:
            why = address_refusal(address)
            if why is not None:
                raise UnsafeUrl(
                    f"The URL's host resolves to {why} ({address}); webhooks are only sent to public addresses "
                    "(set WEBHOOKS_ALLOW_PRIVATE_URLS=true for local development).",
                    code="url_not_public",
                )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=host, port=port, address=str(addresses[0]), path=path)
