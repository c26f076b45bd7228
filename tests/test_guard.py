"""The guard (issue 13): addresses from member content (links in feeds and pages, redirects)
are fetched only when public, unless they are on the source's own host; a malformed address
fails in words and never stops a source. The feeds come from the real local server on
127.0.0.1; a fake DNS sends the test names there, and 'public.test' plays a public server."""

from __future__ import annotations

import pickle
import socket

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from aggregator.errors import ParseError, Refused
from aggregator.fetch import Fetcher, open_session
from aggregator.guard import Guard, malformed, why_not
from aggregator.model import FetchOutcome, Problem
from aggregator.problems import problem
from tests.conftest import FEEDS, make_settings

FEED = (FEEDS / "groen-omstilling.ics").read_bytes()


class Names(AbstractResolver):
    """A DNS for the tests: every name in `names` is the local server; others fail to
    resolve (nothing reaches the internet). `weird.test` raises what a broken system
    resolver raises."""

    def __init__(self, names=("public.test", "inside.test", "member.test")) -> None:
        self.names = set(names)
        self.asked: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.asked.append(host)
        if host == "weird.test":
            raise UnicodeError("label empty or too long")
        if host == "buggy.test":
            raise RuntimeError("a resolver with a bug")
        if host not in self.names:
            raise OSError(f"no such name: {host}")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def fetcher(tmp_path):
    """A scheduler's Fetcher: its plain session (for sources.yaml) and the guarded one both
    resolve the test names to the local server; only 'public.test' counts as public."""
    settings = make_settings(tmp_path, [], retries=0)
    async with open_session(settings.network, settings.limits, Names()) as session:
        guard = Guard(public_names={"public.test"})
        async with Fetcher(session, settings.limits, guard=guard, resolver=Names()) as fetcher:
            yield fetcher


def at(url: str, host: str) -> str:
    """The local server's URL under another host name (same port)."""
    return url.replace("127.0.0.1", host, 1)


def failed_with(result, *words: str) -> str:
    assert result.outcome is FetchOutcome.FAILED, result
    assert result.error and all(w in result.error for w in words), result.error
    return result.error


# -- addresses: which are public ----------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",  # IPv4-mapped
        "64:ff9b::8.8.8.8",  # NAT64 of a public IPv4
        "64:ff9b::101:101",  # 1.1.1.1
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "2002:101:101:1::1",  # 6to4 of 1.1.1.1, a subnet and host after it
        "::8.8.8.8",  # IPv4-compatible, a public IPv4
    ],
)
def test_public_addresses_pass(address):
    assert why_not(address) is None


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),  # shared (carrier-grade NAT)
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        # NAT64: the IPv4 in the last 32 bits
        ("64:ff9b::10.0.0.1", "private"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::169.254.169.254", "link-local"),
        ("64:ff9b::192.168.0.1", "private"),
        ("64:ff9b::0.0.0.0", "unspecified"),
        ("64:ff9b:1::808:808", "local-use NAT64"),
        # 6to4: the IPv4 in bits 16-48
        ("2002:a00:1::", "private"),
        ("2002:a00:5::1", "10.0.0.5"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:c0a8:101:1::1", "192.168.1.1"),
        ("2002:a9fe:a9fe::", "link-local"),
        ("2002::", "unspecified"),
        # IPv4-compatible ::a.b.c.d
        ("::10.0.0.1", "private"),
        ("::127.0.0.1", "loopback"),
        ("::169.254.169.254", "link-local"),
        ("::192.168.1.1", "192.168.1.1"),
        ("::0.0.0.2", "0.0.0.2 inside"),
        ("ff02::1", "multicast"),
    ],
)
def test_addresses_inside_are_named_with_the_reason(address, says):
    reason = why_not(address)
    assert reason is not None and says in reason and address in reason


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.1/feed.ics", "127.0.0.1"),  # numbers as the system reads them
        ("http://2130706433/feed.ics", "loopback"),
        ("http://0177.0.0.1/feed.ics", "loopback"),
        ("http://[64:ff9b::a00:5]/", "private"),
        ("http://[2002:a00:5::1]/", "private"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("webcal://10.0.0.5/cal.ics", "private"),
    ],
)
def test_the_check_reads_numeric_hosts_as_the_system_does(url, says):
    with pytest.raises(Refused) as refused:
        Guard().check_url(url)
    assert says in refused.value.message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://a..b/", "a..b is not a valid host name"),
        ("http://.example.org/", "not a valid host name"),
        ("http://[::1/", "cannot be read as an address"),
        ("http://example.org:99999/", "the port"),
        ("http://example.org:0/", "the port"),
        ("http://example.org:http/", "the port"),
        ("http://exa mple.org/", "not a valid host name"),
        ("http://999.1/", "neither a name nor an address"),
        ("http:///feed.ics", "no host name"),
        ("http://" + "a" * 64 + ".dk/", "not a valid host name"),
    ],
)
def test_a_malformed_address_is_refused_in_words(url, says):
    assert says in (malformed(url) or "")
    with pytest.raises(Refused) as refused:  # never ValueError or UnicodeError
        Guard().check_url(url)
    assert "not a valid address" in refused.value.message and says in refused.value.message


@pytest.mark.parametrize(
    "url", ["http://example.org/feed", "https://xn--rdhus-sua.dk:8443/x", "http://[2001:db8::1]/"]
)
def test_well_formed_addresses_are_not_malformed(url):
    assert malformed(url) is None


async def test_the_guarded_resolver_refuses_names_inside_and_malformed_ones():
    resolver = Guard(public_names={"public.test"}).resolver(Names())
    assert (await resolver.resolve("public.test", 80))[0]["host"] == "127.0.0.1"
    with pytest.raises(Refused, match="inside.test resolves to 127.0.0.1, a loopback"):
        await resolver.resolve("inside.test", 80)
    with pytest.raises(Refused, match="not a valid address"):
        await resolver.resolve("a..b", 80)


# -- fetching what member content links to -------------------------------------------------


async def test_a_link_to_loopback_is_refused_and_never_asked(fetcher, feed_server):
    link = feed_server.serve("/page.html", "<html>secret</html>")
    result = await fetcher.fetch(link, content=True, trusted_host="member.test")
    failed_with(result, link, "127.0.0.1, a loopback address", "only public addresses are read")
    assert result.body == b"" and feed_server.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "127.1",
        "2130706433",
        "[::ffff:127.0.0.1]",
        # full stops yarl reads as dots: aiohttp then connects without asking the resolver
        "127\u30020\u30020\u30021",
        "127\uff0e0\uff0e0\uff0e1",
        "127\uff610\uff610\uff611",
        "127\u30021",
    ],
)
async def test_a_link_to_loopback_written_otherwise_is_refused(fetcher, feed_server, host):
    link = at(feed_server.serve("/page.html", "secret"), host)
    failed_with(await fetcher.fetch(link, content=True), "loopback")
    with pytest.raises(Refused):  # and /check's guard
        Guard().check_url(link)
    assert feed_server.requests == []


async def test_a_link_to_a_name_inside_is_refused_by_the_resolver(fetcher, feed_server):
    link = at(feed_server.serve("/page.html", "secret"), "inside.test")
    result = await fetcher.fetch(link, content=True, trusted_host="member.test")
    failed_with(result, "inside.test resolves to 127.0.0.1", "loopback", "only public")
    assert feed_server.requests == []


async def test_a_public_link_is_fetched_through_the_guard(fetcher, feed_server):
    link = at(feed_server.serve("/feed.ics", FEED), "public.test")
    result = await fetcher.fetch(link, content=True, trusted_host="member.test")
    assert result.outcome is FetchOutcome.OK and result.body == FEED
    agent = feed_server.requests[-1].headers["User-Agent"]
    assert agent.startswith("aggregator/")  # the guarded session says who it is, too


async def test_a_public_host_redirecting_inside_is_refused_at_the_hop(fetcher, feed_server):
    inside = feed_server.serve("/page.html", "secret")

    async def redirect(_request):
        raise web.HTTPFound(inside)

    moved = at(feed_server.serve("/moved", handler=redirect), "public.test")
    result = await fetcher.fetch(moved, content=True, trusted_host="member.test")
    failed_with(result, f"redirects to {inside}", "127.0.0.1, a loopback address")
    assert [r.path for r in feed_server.requests] == ["/moved"]  # the page was never asked


async def test_a_redirect_to_a_name_inside_is_refused_by_the_resolver(fetcher, feed_server):
    inside = at(feed_server.serve("/page.html", "secret"), "inside.test")

    async def redirect(_request):
        raise web.HTTPFound(inside)

    moved = at(feed_server.serve("/moved", handler=redirect), "public.test")
    result = await fetcher.fetch(moved, content=True)
    failed_with(result, "inside.test resolves to 127.0.0.1", "loopback")
    assert [r.path for r in feed_server.requests] == ["/moved"]


async def test_links_to_the_sources_own_host_are_fetched(fetcher, feed_server):
    page = feed_server.serve("/page.html", "<html>event</html>")
    for trusted in ("127.0.0.1", feed_server.url("/feed.rss")):  # a host, or the source URL
        result = await fetcher.fetch(page, content=True, trusted_host=trusted)
        assert result.outcome is FetchOutcome.OK and result.body == b"<html>event</html>"
    named = at(page, "inside.test")
    result = await fetcher.fetch(named, content=True, trusted_host="Inside.TEST")
    assert result.outcome is FetchOutcome.OK  # host names compare case-insensitively


async def test_a_configured_url_on_localhost_is_fetched(fetcher, feed_server):
    url = feed_server.serve("/feed.ics", FEED)
    result = await fetcher.fetch(url)  # content=False: the operator's word
    assert result.outcome is FetchOutcome.OK and result.body == FEED


async def test_a_configured_url_redirecting_to_its_own_host_is_followed(fetcher, feed_server):
    feed = at(feed_server.serve("/feed.ics", FEED), "inside.test")

    async def redirect(_request):
        raise web.HTTPMovedPermanently(feed)

    result = await fetcher.fetch(at(feed_server.serve("/old", handler=redirect), "inside.test"))
    assert result.outcome is FetchOutcome.OK and result.moved_to == feed


async def test_a_configured_url_redirecting_inside_another_host_is_refused(fetcher, feed_server):
    inside = feed_server.serve("/feed.ics", FEED)  # 127.0.0.1: another host than inside.test

    async def redirect(_request):
        raise web.HTTPFound(inside)

    configured = at(feed_server.serve("/moved", handler=redirect), "inside.test")
    result = await fetcher.fetch(configured)
    failed_with(result, f"{configured} redirects to {inside}", "loopback", "only public")
    assert result.status == 302 and [r.path for r in feed_server.requests] == ["/moved"]


@pytest.mark.parametrize(
    "link",
    [
        "file:///etc/passwd",
        "/etc/passwd",
        "javascript:alert(1)",
        "data:text/calendar,BEGIN:VCALENDAR",
        "ftp://public.test/feed.ics",
        "gopher://public.test:70/",
    ],
)
async def test_a_link_that_is_not_a_web_address_is_refused(fetcher, link):
    failed_with(
        await fetcher.fetch(link, content=True, trusted_host="public.test"), "not a web address"
    )


async def test_a_redirect_to_a_file_is_refused(fetcher, feed_server):
    async def redirect(_request):
        raise web.HTTPFound("file:///etc/passwd")

    moved = at(feed_server.serve("/moved", handler=redirect), "public.test")
    failed_with(await fetcher.fetch(moved, content=True), "not a web address")


# -- nothing makes a source vanish ----------------------------------------------------------


@pytest.mark.parametrize("content", [False, True])
@pytest.mark.parametrize(
    "url", ["http://a..b/", "http://[::1/", "http://example.org:99999/", "webcal://.x/cal.ics"]
)
async def test_a_malformed_address_is_a_failure_in_words(fetcher, url, content):
    result = await fetcher.fetch(url, content=content)  # no exception
    failed_with(result, "not a valid address")


async def test_a_redirect_to_a_malformed_address_is_a_failure_in_words(fetcher, feed_server):
    async def redirect(_request):
        return web.Response(status=302, headers={"Location": "http://a..b/feed"})

    result = await fetcher.fetch(feed_server.serve("/moved", handler=redirect))
    failed_with(result, "not a valid address", "a..b")


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("weird.test", "not a valid address"),  # UnicodeError deep in a resolver
        ("buggy.test", "RuntimeError: a resolver with a bug"),
        ("nowhere.test", "could not connect"),
    ],
)
async def test_an_error_anywhere_in_a_fetch_comes_back_in_words(fetcher, feed_server, host, says):
    result = await fetcher.fetch(at(feed_server.url("/feed.ics"), host), content=True)
    failed_with(result, says)


async def test_without_a_session_an_http_address_fails_in_words(tmp_path):
    settings = make_settings(tmp_path, [])
    result = await Fetcher(None, settings.limits).fetch("http://example.org/feed.ics")
    failed_with(result, "no HTTP client")


async def test_the_check_hook_still_raises(tmp_path, feed_server):
    """/check relies on Refused: a refusal there is an answer to the visitor, not a fetch."""
    settings = make_settings(tmp_path, [])
    guard = Guard()
    async with open_session(settings.network, settings.limits, guard.resolver(Names())) as s:
        fetcher = Fetcher(s, settings.limits, check_url=guard.check_url)
        for url in (feed_server.url("/feed.ics"), "file:///etc/passwd", "http://a..b/"):
            with pytest.raises(Refused):
                await fetcher.fetch(url, content=True)
        with pytest.raises(Refused, match="inside.test resolves to"):
            await fetcher.fetch(at(feed_server.url("/feed.ics"), "inside.test"))
    assert feed_server.requests == []


async def test_the_fetcher_closes_the_session_it_made(tmp_path, feed_server):
    settings = make_settings(tmp_path, [])
    link = at(feed_server.serve("/feed.ics", FEED), "public.test")
    async with open_session(settings.network, settings.limits) as session:
        guard = Guard(public_names={"public.test"})
        async with Fetcher(session, settings.limits, guard=guard, resolver=Names()) as fetcher:
            assert (await fetcher.fetch(link, content=True)).outcome is FetchOutcome.OK
            guarded = fetcher._guarded
            assert guarded is not None and guarded is not session
        assert guarded.closed and not session.closed


# -- each failure has a code (its hint and its words in a page's language come by it) --------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _loop(_request):
    raise web.HTTPFound("/loop")


@pytest.mark.parametrize(
    ("how", "code", "detail"),
    [
        ("status 404", "http-check-address", {"status": "404"}),
        ("status 500", "server-error", {"status": "500"}),
        ("status 410", "gone", {}),
        ("status 418", "http-status", {"status": "418"}),
        ("loop", "redirect-loop", {}),
        ("loopback", "link-refused", {"kind": "a loopback address (this server itself)"}),
        ("inside", "resolves-refused", {"host": "inside.test", "address": "127.0.0.1"}),
        ("nowhere", "dns-failed", {"host": "nowhere.test"}),
        ("closed port", "connect-refused", {"host": "127.0.0.1"}),
        ("ftp", "link-not-web", {}),
        ("empty label", "address-host-part", {"host": "a..b"}),
        ("bad port", "address-port", {}),
        ("no file", "file-unreadable", {}),
    ],
)
async def test_every_failure_has_a_code_and_its_words(fetcher, feed_server, how, code, detail):
    content = True
    if how.startswith("status"):
        status = int(how.split()[1])
        url = at(feed_server.serve(f"/s{status}", "x", status=status), "public.test")
    elif how == "loop":
        url = at(feed_server.serve("/loop", handler=_loop), "public.test")
    elif how in ("inside", "nowhere"):
        url = at(feed_server.url("/feed.ics"), f"{how}.test")
    elif how == "loopback":
        url = feed_server.url("/feed.ics")
    elif how == "closed port":
        url, content = f"http://127.0.0.1:{_closed_port()}/feed.ics", False
    elif how == "ftp":
        url = "ftp://example.org/feed.ics"
    elif how == "empty label":
        url = "http://a..b/feed.ics"
    elif how == "bad port":
        url = "http://example.org:99999/feed.ics"
    else:
        url, content = "/nonexistent/feed.ics", False
    result = await fetcher.fetch(url, content=content)
    assert result.outcome is FetchOutcome.FAILED
    assert result.problem is not None and result.problem.code == code, result.problem
    assert result.error == result.problem.words
    assert detail.items() <= dict(result.problem.detail).items()


async def test_a_refusal_under_check_carries_its_code(tmp_path, feed_server):
    settings = make_settings(tmp_path, [])
    guard = Guard()
    async with open_session(settings.network, settings.limits, guard.resolver(Names())) as s:
        fetcher = Fetcher(s, settings.limits, check_url=guard.check_url)
        with pytest.raises(Refused) as refused:
            await fetcher.fetch(at(feed_server.url("/feed.ics"), "inside.test"))
    assert refused.value.problem.code == "resolves-refused"
    assert refused.value.message == refused.value.problem.words
    with pytest.raises(Refused) as refused:
        guard.check_url("http://127.1/feed.ics")
    assert refused.value.problem.code == "check-refused"
    assert dict(refused.value.problem.detail)["host"] == "127.1 (127.0.0.1)"


def test_a_parse_error_keeps_its_code_across_processes():
    error = ParseError("https://x.org/f", problem("over-memory", what="the feed", memory=512))
    again = pickle.loads(pickle.dumps(error))
    assert again.problem == error.problem and again.message == error.message
    assert str(again) == f"{error.message} (https://x.org/f)"
    assert ParseError("u", "plain words").problem == Problem.text("plain words")
