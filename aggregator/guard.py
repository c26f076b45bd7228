"""Fetching an address a stranger gave us without letting it reach into our network.

Strangers are a /check visitor and every member's content: a link in a feed or on an event
page, and a redirect (the member's server said it). Only `sources.yaml` is trusted.

Refused: other schemes than http, https and webcal (a file path would read the server's
disk), malformed addresses, and every address that is not globally routable (loopback,
private, link-local where cloud metadata lives, shared, reserved, multicast; and the IPv6
forms that carry an IPv4 address: mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
`64:ff9b::/96` and 6to4 `2002::/16`, judged by the IPv4 inside). Checked for the URL's host
when it is an address (numbers as the system reads them: `127.1` and `2130706433` are
127.0.0.1), for every address its name resolves to (in the resolver aiohttp connects with,
so a name cannot resolve one way when checked and another when used), and again at every
redirect (by the fetch stage, which asks `Guard.host_kind` for each hop).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from aggregator.errors import Refused
from aggregator.problems import Problem, problem

__all__ = [
    "WEB_SCHEMES",
    "Guard",
    "Refused",
    "address_kind",
    "invalid_address",
    "malformed",
    "numeric_host",
    "scheme_of",
    "shown_host",
    "why_not",
]

#: the schemes fetched over the network (webcal is https by convention)
WEB_SCHEMES = ("http", "https", "webcal")

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")


def why_not(address: str) -> str | None:
    """Why an IP address is not fetched from, or None when it is a public one.

    Raises ValueError when `address` is not an IP address (a name).
    """
    kind = address_kind(address)
    return None if kind is None else f"{address} is {kind}"


def address_kind(address: str) -> str | None:
    """What kind of non-public address `address` is ("a private network address"), or None
    when it is a public one. Raises ValueError when it is not an IP address."""
    return _kind(ipaddress.ip_address(address.split("%", 1)[0]))


# each kind in words is one of problems.PHRASES too: a page says it in its own language
def _kind(ip: _IP) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded(ip)
        if inner is not None:
            kind = _kind(inner)
            return None if kind is None else f"{kind} ({inner} inside an IPv6 address)"
        if ip in _LOCAL_NAT64:
            return "a local-use NAT64 address (it reaches a private network)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_global:
        return None
    if ip.is_unspecified:
        return "the unspecified address (it reaches this server itself)"
    if ip.is_loopback:
        return "a loopback address (this server itself)"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private network address"
    return "not a public address"


def _embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (and reaches, through a gateway), if any."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48, the IPv4 in bits 16-48
        return ip.sixtofour
    if ip in _NAT64:  # 64:ff9b::a.b.c.d (RFC 6052), the IPv4 in the last 32 bits
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _COMPATIBLE and int(ip) > 1:  # ::a.b.c.d (:: and ::1 are themselves)
        return ipaddress.IPv4Address(int(ip))
    return None


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ('' for a path), whether or not the rest is valid."""
    found = _SCHEME.match(url.strip())
    return found.group(1).lower() if found else ""


def connect_host(url: str) -> str:
    """The URL's host as aiohttp will connect to it, lower case ('' when there is none).

    yarl writes a host in its IDNA form, where the ideographic and fullwidth full stops
    (U+3002, U+FF0E, U+FF61) are dots: `127。0。0。1` connects to 127.0.0.1, and aiohttp
    then skips the resolver. So every check reads the host this way, never as urlsplit
    leaves it.
    """
    try:
        return (URL(url.strip()).host or "").lower()
    except (ValueError, TypeError, UnicodeError):
        return ""


def numeric_host(host: str) -> str | None:
    """The IP address a host that is written as one means, or None for a name.

    aiohttp takes any host of digits and dots for an address and hands it to the system
    unresolved, which reads `127.1`, `0177.0.0.1` and `2130706433` as 127.0.0.1 (inet_aton):
    read them the same way here. Raises ValueError for numbers that are no address.
    """
    bare = host.strip("[]")
    if ":" in bare:
        return str(ipaddress.IPv6Address(bare.split("%", 1)[0]))
    if bare.replace(".", "").isdigit():
        try:
            return socket.inet_ntoa(socket.inet_aton(bare))
        except OSError:
            raise ValueError(f"{host} is neither a name nor an address") from None
    return None


def shown_host(host: str) -> str:
    """A host as a member reads it: with the address it means when written as numbers that
    are not one ("127.1 (127.0.0.1)")."""
    address = numeric_host(host)
    return host if address == host else f"{host} ({address})"


#: how every invalid_address problem begins; malformed() gives what follows
_INVALID = "not a valid address: "


def malformed(url: str) -> str | None:
    """Why `url` is not a well-formed http(s) address, in words, or None when it is one."""
    found = invalid_address(url)
    return None if found is None else found.words.removeprefix(_INVALID)


def invalid_address(url: str) -> Problem | None:
    """Why `url` is not a well-formed http(s) address ("not a valid address: ..."), or None
    when it is one.

    Pure: nothing is resolved. Catches what would otherwise blow up deep inside the
    resolver or yarl (`http://a..b/`, `http://[::1/`, a port out of range).
    """
    try:
        parts = urlsplit(url)
    except ValueError as e:  # 'Invalid IPv6 URL'
        return problem("address-unreadable", url=url, error=e)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        return problem("address-port", url=url)
    host = parts.hostname
    if not host:
        return problem("address-no-host", url=url)
    invalid = _invalid_host(host)
    if invalid:
        return invalid
    try:
        URL(url)
    except (ValueError, TypeError) as e:
        return problem("address-unreadable", url=url, error=e)
    return None


def _invalid_host(host: str) -> Problem | None:
    try:
        if numeric_host(host) is not None:
            return None
    except ValueError:
        return problem("address-number", host=host)
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:  # an empty label ('a..b'), a label over 63 characters
        return problem("address-host-part", host=host)
    labels = ascii_host.removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        return problem("address-host", host=host)
    return None


class Guard:
    """Checks the addresses of fetches a stranger chose (/check, links in member content,
    redirects).

    `public_names` is for the test suite only: host names whose (local) addresses count as
    public, so that a local server can play a public one.
    """

    def __init__(self, public_names: Iterable[str] = ()) -> None:
        self.public_names = frozenset(n.lower() for n in public_names)

    def host_kind(self, host: str) -> str | None:
        """What kind of non-public address the host is, written as an address ("a loopback
        address (this server itself)"), or None: a public address, or a name (its addresses
        are checked when it is resolved). Raises ValueError for numbers that are no address.
        """
        if host.lower() in self.public_names:
            return None
        address = numeric_host(host)
        return None if address is None else address_kind(address)

    def check_url(self, url: str) -> None:
        """Raise Refused unless the URL is http(s)/webcal with a host we may contact."""
        if scheme_of(url) not in WEB_SCHEMES:
            raise Refused(problem("check-scheme", url=repr(url)))
        invalid = invalid_address(url.strip())
        if invalid:
            raise Refused(invalid)
        host = connect_host(url)
        kind = self.host_kind(host)
        if kind:
            raise Refused(problem("check-refused", url=url, host=shown_host(host), kind=kind))

    def resolver(self, inner: AbstractResolver | None = None) -> AbstractResolver:
        """A resolver that refuses (raises Refused) a name with any non-public address."""
        return _GuardedResolver(self, inner or aiohttp.ThreadedResolver())


class _GuardedResolver(AbstractResolver):
    def __init__(self, guard: Guard, inner: AbstractResolver) -> None:
        self.guard = guard
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() not in self.guard.public_names:
            invalid = _invalid_host(host)
            if invalid:  # the system's resolver would raise UnicodeError
                raise Refused(invalid)
        found = await self.inner.resolve(host, port, family)
        if host.lower() not in self.guard.public_names:
            for result in found:
                kind = address_kind(result["host"])
                if kind:
                    address = result["host"]
                    raise Refused(
                        problem("resolves-refused", host=host, address=address, kind=kind)
                    )
        return found

    async def close(self) -> None:
        await self.inner.close()
