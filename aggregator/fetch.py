"""The only network client: http(s), webcal (as https) and local files -> FetchResult.

A polite client: conditional GET, at most `per_host` fetches at once to one host, timeouts,
a size cap that holds after decompression, redirects followed by hand (loops caught,
permanent moves noticed), transient failures retried with backoff and jitter, Retry-After
honoured. Never raises: every outcome, a malformed address and an unexpected error
included, comes back as a FetchResult whose `problem` says what happened (a stable code, and
`error`: its words, which a member can act on); only the /check hook `check_url` raises
Refused. One request and its redirects are asked and read in fetch_http.py.

Addresses from member content (links in feeds and pages, redirects to another host) go
through the guard (aggregator/guard.py): public addresses only, checked for a literal host,
in the resolver of the session that connects, and at every redirect. The configured URL of
a source and links to its host are the operator's word and are fetched as they are.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from aggregator import __version__
from aggregator.errors import Refused
from aggregator.fetch_http import failure, fetch_http, http_url, timeouts
from aggregator.guard import (
    WEB_SCHEMES,
    Guard,
    connect_host,
    invalid_address,
    scheme_of,
    shown_host,
)
from aggregator.model import FetchOutcome, FetchResult, Limits, Network, Validators
from aggregator.problems import Problem, problem

log = logging.getLogger(__name__)

ACCEPT = (
    "text/calendar, application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
)


def user_agent(network: Network) -> str:
    return f"aggregator/{__version__} (+{network.base_url}; {network.name})"


def open_session(
    network: Network, limits: Limits, resolver: aiohttp.abc.AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """One session per process (aiohttp: "Don't create a session per request")."""
    return _session({"User-Agent": user_agent(network), "Accept": ACCEPT}, limits, resolver)


def _session(
    headers, limits: Limits, resolver: aiohttp.abc.AbstractResolver | None
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=timeouts(limits),
        headers=headers,
        # a member's server may send cookies; we never want them to change what we read
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(
            limit=limits.concurrency, limit_per_host=limits.per_host, resolver=resolver
        ),
    )


def is_local(url: str) -> bool:
    """A file path (or another scheme than http, https and webcal)."""
    return scheme_of(url) not in WEB_SCHEMES


def host_of(url: str) -> str:
    """The URL's host as the connection will see it, lower case ('' when it has none or
    cannot be read): see guard.connect_host."""
    return connect_host(http_url(url.strip()))


class Fetcher:
    """Fetches feeds politely; one per process, shared by every source.

    Two sessions: `session`, for the addresses of `sources.yaml` (the operator's word), and
    one made when first needed whose resolver refuses non-public addresses (`guard`), for
    addresses from member content and redirects to other hosts. `close()` closes the one
    it made; `session` belongs to the caller.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        limits: Limits,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        check_url: Callable[[str], None] | None = None,
        guard: Guard | None = None,
        resolver: aiohttp.abc.AbstractResolver | None = None,
    ) -> None:
        self.session = session
        self.limits = limits
        self.sleep = sleep
        self.jitter = jitter
        #: /check: called with every address before it is asked, redirects included; raises
        #: Refused to refuse, and the fetch raises it on (`session` is a guarded one then)
        self.check_url = check_url
        #: judges addresses from member content and redirects to other hosts
        self.guard = guard or Guard()
        #: what the guarded session resolves with, inside the guard (tests: a fake DNS)
        self.resolver = resolver
        self._guarded: aiohttp.ClientSession | None = None
        self._guarded_resolver: aiohttp.abc.AbstractResolver | None = None
        self._all = asyncio.Semaphore(limits.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the guarded session, if one was made."""
        guarded, self._guarded = self._guarded, None
        if guarded is not None:
            await guarded.close()
        resolver, self._guarded_resolver = self._guarded_resolver, None
        if resolver is not None and self.resolver is None:  # an injected one is the caller's
            await resolver.close()

    async def fetch(
        self,
        url: str,
        validators: Validators | None = None,
        *,
        trusted_host: str | None = None,
        content: bool = False,
    ) -> FetchResult:
        """Fetch once, retrying transient failures with backoff inside this call.

        `content=False`: `url` is from sources.yaml and is fetched whatever it is (a file,
        localhost); its host is trusted. `content=True`: `url` was found in member content;
        it must be http(s) or webcal, and unless its host is `trusted_host` (the host of the
        source's configured URL, or that URL) only a public address is asked. Either way a
        redirect to a host not trusted is judged like content.

        Never raises: a refusal, an invalid address and every failure come back as a FAILED
        result whose error says why. Only `check_url` (/check) raises Refused.
        """
        started = time.monotonic()
        try:
            return await self._fetch(url, validators, trusted_host, content, started)
        except Refused as refused:
            if self.check_url is not None:
                raise
            return failure(url, started, refused.problem)
        except Exception as e:  # noqa: BLE001  (a fetch never raises; a source never vanishes)
            if not isinstance(e, (ValueError, OSError, aiohttp.ClientError)):
                log.warning("fetching %s failed unexpectedly", url, exc_info=True)
            return failure(url, started, _unexpected(url, e))

    async def _fetch(
        self,
        url: str,
        validators: Validators | None,
        trusted_host: str | None,
        content: bool,
        started: float,
    ) -> FetchResult:
        if self.check_url is not None:
            self.check_url(url)
        if content:
            if scheme_of(url) not in WEB_SCHEMES:
                return failure(url, started, problem("link-not-web", link=repr(url)))
        elif is_local(url):
            return _read_file(url, self.limits, started, validators)
        trusted = frozenset(
            h.lower() for h in (_host(trusted_host), None if content else host_of(url)) if h
        )
        validators = validators or Validators()
        attempt = 0
        while True:
            attempt += 1
            result = await self._limited(url, validators, started, trusted)
            if not result.transient or attempt > self.limits.retries:
                return replace(result, attempts=attempt, duration=time.monotonic() - started)
            # exponential backoff with jitter (0.5x-1.5x), never sooner than Retry-After
            delay = self.limits.retry_delay * 2 ** (attempt - 1) * (0.5 + self.jitter())
            if result.retry_after is not None:
                if result.retry_after > self.limits.max_retry_wait:
                    return replace(result, attempts=attempt, duration=time.monotonic() - started)
                delay = max(delay, result.retry_after)
            await self.sleep(delay)

    def _route(
        self, target: str, via: str | None, trusted: frozenset[str]
    ) -> aiohttp.ClientSession | Problem:
        """The session to ask `target` with, or why it is not asked.

        `via` is the address that redirected to it (None for the first address).
        """
        if self.check_url is not None:
            if via is not None:
                self.check_url(target)
            return self.session or problem("no-client")
        if scheme_of(target) not in WEB_SCHEMES:
            if via is None:
                return problem("link-scheme", url=target)
            return problem("redirect-scheme", via=via, url=target)
        invalid = invalid_address(http_url(target))
        if invalid:
            return invalid
        host = host_of(target)
        if host in trusted:
            return self.session or problem("no-client-local")
        kind = self.guard.host_kind(host)
        if kind:
            shown = shown_host(host)
            if via is None:
                return problem("link-refused", url=target, host=shown, kind=kind)
            return problem("redirect-refused", via=via, url=target, host=shown, kind=kind)
        return self._guarded_session()

    def _guarded_session(self) -> aiohttp.ClientSession:
        if self._guarded is None:
            headers = dict(self.session.headers) if self.session is not None else {}
            headers.setdefault("Accept", ACCEPT)
            self._guarded_resolver = self.guard.resolver(self.resolver)
            self._guarded = _session(headers, self.limits, self._guarded_resolver)
        return self._guarded

    async def _limited(
        self, url: str, validators: Validators, started: float, trusted: frozenset[str]
    ) -> FetchResult:
        host = host_of(http_url(url))
        per_host = self._hosts.setdefault(host, asyncio.Semaphore(self.limits.per_host))
        # the host's turn first: a busy host must not hold global slots others could use
        async with per_host, self._all:
            return await fetch_http(
                partial(self._route, trusted=trusted), url, self.limits, validators, started
            )


def _host(trusted_host: str | None) -> str | None:
    """A host name as given, or the host of a URL given instead."""
    if trusted_host and "/" in trusted_host:
        return host_of(trusted_host)
    return trusted_host


def _unexpected(url: str, error: Exception) -> Problem:
    """An unexpected failure of a fetch, as a problem."""
    if isinstance(error, (UnicodeError, ValueError, aiohttp.InvalidURL)):
        return problem("address-invalid", url=url, error=f"{type(error).__name__}: {error}")
    if isinstance(error, OSError):
        return problem("connection-failed", error=error.strerror or error)
    return problem("fetch-failed", error=f"{type(error).__name__}: {error}")


def _read_file(
    url: str, limits: Limits, started: float, validators: Validators | None = None
) -> FetchResult:
    """A local file, read; or "not modified" when its validator (file, size and time of the
    last change) is the one given, as a server's 304: a cycle over 1,000 unchanged files
    reads none of them."""
    path = Path(urlsplit(url).path if url.startswith("file:") else url)
    try:
        stat = path.stat()
        if stat.st_size > limits.max_bytes:
            found = problem("file-too-big", size=f"{stat.st_size:,}", limit=f"{limits.max_bytes:,}")
            # no duration: the file was not read
            return FetchResult(FetchOutcome.FAILED, url, error=found.words, problem=found)
        tag = Validators(etag=f"file:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}")
        if validators is not None and validators.etag == tag.etag:
            return FetchResult(
                FetchOutcome.NOT_MODIFIED,
                url,
                final_url=str(path),
                validators=tag,
                duration=time.monotonic() - started,
            )
        body = path.read_bytes()
    except OSError as e:
        return failure(url, started, problem("file-unreadable", path=path, error=e.strerror or e))
    if stat.st_size != len(body):  # changed while read: its next read is not "not modified"
        tag = Validators()
    return FetchResult(
        FetchOutcome.OK,
        url,
        final_url=str(path),
        body=body,
        validators=tag,
        duration=time.monotonic() - started,
    )
