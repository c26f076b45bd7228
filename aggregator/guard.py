"""Fetching a URL a stranger gave us (/check) without letting it reach into our network.

Refused: other schemes than http, https and webcal (a file path would read the server's
disk), and every address that is not globally routable (loopback, private, link-local where
cloud metadata lives, shared, reserved, multicast, IPv4 in IPv6). Checked for the URL's host
when it is an address, for every address its name resolves to (in the resolver aiohttp
connects with, so a name cannot resolve one way when checked and another when used), and
again at every redirect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from aggregator.errors import Refused

__all__ = ["Guard", "Refused", "why_not"]


def why_not(address: str) -> str | None:
    """Why an IP address is not fetched from, or None when it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global:
        return None
    if ip.is_unspecified:
        kind = "the unspecified address (it reaches this server itself)"
    elif ip.is_loopback:
        kind = "a loopback address (this server itself)"
    elif ip.is_link_local:
        kind = "a link-local address (where cloud metadata services answer)"
    elif ip.is_private:
        kind = "a private network address"
    else:
        kind = "not a public address"
    return f"{address} is {kind}"


class Guard:
    """Checks the URLs and addresses of one /check fetch.

    `public_names` is for the test suite only: host names whose (local) addresses count as
    public, so that a local server can play a public one.
    """

    def __init__(self, public_names: Iterable[str] = ()) -> None:
        self.public_names = frozenset(n.lower() for n in public_names)

    def check_url(self, url: str) -> None:
        """Raise Refused unless the URL is http(s)/webcal with a host we may contact."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https", "webcal"):
            raise Refused(f"{url!r}: only http, https and webcal addresses can be checked")
        host = (parts.hostname or "").lower()
        if not host:
            raise Refused(f"{url!r} has no host name")
        if host in self.public_names:
            return
        try:
            reason = why_not(host)
        except ValueError:
            return  # a name: its addresses are checked when it is resolved
        if reason:
            raise Refused(f"{url}: {reason}; only public addresses can be checked")

    def resolver(self, inner: AbstractResolver | None = None) -> AbstractResolver:
        return _GuardedResolver(self, inner or aiohttp.ThreadedResolver())


class _GuardedResolver(AbstractResolver):
    def __init__(self, guard: Guard, inner: AbstractResolver) -> None:
        self.guard = guard
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if host.lower() not in self.guard.public_names:
            for result in found:
                reason = why_not(result["host"])
                if reason:
                    raise Refused(
                        f"{host} resolves to {reason}; only public addresses can be checked"
                    )
        return found

    async def close(self) -> None:
        await self.inner.close()
