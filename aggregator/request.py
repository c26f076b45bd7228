"""What a web request asks for, read from its query and headers: the page's language, JSON
or HTML, and who the client is (behind a proxy we trust). One rule each, used by every route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import web

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def wants_json(request: web.Request, *, by_default: bool) -> bool:
    """Whether to answer JSON rather than the page.

    A path ending in .json or ?format=json asks for JSON; a browser always names text/html
    in Accept and gets the page; a client that names application/json (and not text/html)
    gets JSON; anyone else (curl's */*, no Accept) gets `by_default`: the route's own
    choice (JSON for the /sources reports, the page for an event and /check)."""
    if request.path.endswith(".json") or request.query.get("format") == "json":
        return True
    accept = request.headers.get("Accept", "")
    if "text/html" in accept:
        return False
    return "application/json" in accept or by_default


def page_language(request: web.Request, languages: Sequence[str]) -> str:
    """The language of the page to answer: see choose_language."""
    return choose_language(
        request.query.get("lang"), request.headers.get("Accept-Language"), languages
    )


def choose_language(
    query_lang: str | None, accept_language: str | None, languages: Sequence[str]
) -> str:
    """The page's language: ?lang= when the network has it, else the best of Accept-Language
    (q values honoured, 'da-DK' matches 'da'), else the network's first language."""
    if not languages:
        return "en"
    by_tag = {lang.lower(): lang for lang in languages}
    if query_lang and query_lang.strip().lower() in by_tag:
        return by_tag[query_lang.strip().lower()]
    ranked, refused = _accepted(accept_language or "")
    for tag in ranked:
        if tag == "*":
            rest = [lang for lang in languages if lang.lower() not in refused]
            if rest:
                return rest[0]
            continue
        if tag in by_tag:
            return by_tag[tag]
        primary = tag.split("-")[0]
        for lang in languages:
            if lang.lower().split("-")[0] == primary:
                return lang
    return languages[0]


def _accepted(header: str) -> tuple[list[str], set[str]]:
    """Accept-Language's tags (lower case), best first (by q, then as written), and those it
    refuses (q=0 is "not acceptable", RFC 9110 section 12.4.2)."""
    ranked: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if not 0.0 < weight <= 1.0:
            refused.add(tag)
            continue
        ranked.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(ranked)], refused


def trusted_proxies(proxies: Iterable[str]) -> Networks:
    """network.trusted_proxies, parsed."""
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(request: web.Request, proxies: Networks) -> str:
    """The client's address, for anything kept per client (the /check limit).

    From a peer in `proxies` it is the right-most X-Forwarded-For address that is not itself
    a trusted proxy (each proxy appends the address it saw; what is left of that is the
    client's to write, so it is never believed); from anyone else the header is ignored and
    the peer is the client."""
    peer = request.remote or "unknown"
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", ())
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop
    return hops[0] if hops else peer


def _within(address: str, networks: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
