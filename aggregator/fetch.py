"""The only network client: http(s), webcal (as https) and local files -> FetchResult.

A polite client: conditional GET, at most `per_host` fetches at once to one host, timeouts,
a size cap that holds after decompression, redirects followed by hand (loops caught,
permanent moves noticed), transient failures retried with backoff and jitter, Retry-After
honoured. Never raises: every outcome, a malformed address and an unexpected error
included, comes back as a FetchResult whose `error` says what happened in words a member can
act on (only the /check hook `check_url` raises Refused).

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
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from aggregator import __version__
from aggregator.errors import Refused
from aggregator.guard import (
    WEB_SCHEMES,
    Guard,
    connect_host,
    malformed,
    numeric_host,
    scheme_of,
)
from aggregator.model import FetchOutcome, FetchResult, Limits, Network, Validators

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
ACCEPT = (
    "text/calendar, application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
)
_REDIRECTS = (301, 302, 303, 307, 308)
_PERMANENT = (301, 308)


def user_agent(network: Network) -> str:
    return f"aggregator/{__version__} (+{network.base_url}; {network.name})"


def timeouts(limits: Limits) -> aiohttp.ClientTimeout:
    # sock_read catches a server that stops talking; total catches one that drips
    return aiohttp.ClientTimeout(
        total=limits.total_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=min(limits.total_timeout, max(limits.connect_timeout, 30.0)),
    )


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


def http_url(url: str) -> str:
    """webcal:// is https:// by convention (Apple's scheme for subscriptions)."""
    if scheme_of(url) == "webcal":
        return "https" + url.strip()[len("webcal") :]
    return url


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
            return _failed(url, refused.message, started)
        except Exception as e:  # noqa: BLE001  (a fetch never raises; a source never vanishes)
            if not isinstance(e, (ValueError, OSError, aiohttp.ClientError)):
                log.warning("fetching %s failed unexpectedly", url, exc_info=True)
            return _failed(url, _words(url, e), started)

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
                return _failed(
                    url,
                    f"the link {url!r} is not a web address; only http and https links are read",
                    started,
                )
        elif is_local(url):
            return _read_file(url, self.limits, started)
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
    ) -> aiohttp.ClientSession | str:
        """The session to ask `target` with, or why it is not asked (in words).

        `via` is the address that redirected to it (None for the first address).
        """
        if self.check_url is not None:
            if via is not None:
                self.check_url(target)
            return self.session or "no HTTP client in this run"
        said = f"the link {target}" if via is None else f"{via} redirects to {target}, and it"
        if scheme_of(target) not in WEB_SCHEMES:
            return f"{said} is not a web address; only http and https addresses are read"
        problem = malformed(http_url(target))
        if problem:
            return f"not a valid address: {problem}"
        host = host_of(target)
        if host in trusted:
            return self.session or "no HTTP client in this run (local files only)"
        kind = self.guard.host_kind(host)
        if kind:
            address = numeric_host(host)
            shown = host if address == host else f"{host} ({address})"
            return f"{said} goes to {shown}, {kind}; only public addresses are read"
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
            return await _fetch_http(
                partial(self._route, trusted=trusted), url, self.limits, validators, started
            )


def _host(trusted_host: str | None) -> str | None:
    """A host name as given, or the host of a URL given instead."""
    if trusted_host and "/" in trusted_host:
        return host_of(trusted_host)
    return trusted_host


def _failed(url: str, error: str, started: float) -> FetchResult:
    return FetchResult(FetchOutcome.FAILED, url, error=error, duration=time.monotonic() - started)


def _words(url: str, error: Exception) -> str:
    """An unexpected failure of a fetch, in words."""
    if isinstance(error, (UnicodeError, ValueError, aiohttp.InvalidURL)):
        return f"not a valid address: {url} ({type(error).__name__}: {error})"
    if isinstance(error, OSError):
        return f"the connection failed ({error.strerror or error})"
    return f"the fetch failed: {type(error).__name__}: {error}"


async def _fetch_http(
    route: Callable[[str, str | None], aiohttp.ClientSession | str],
    url: str,
    limits: Limits,
    validators: Validators,
    started: float,
) -> FetchResult:
    """Ask `url`, following redirects by hand; `route` gives each address's session (or
    why it is not asked; it raises Refused under /check)."""
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified

    def failed(error: str, status: int | None = None, **kwargs) -> FetchResult:
        return FetchResult(
            FetchOutcome.FAILED,
            url,
            status=status,
            error=error,
            duration=time.monotonic() - started,
            **kwargs,
        )

    current = http_url(url)
    visited = [current]
    permanent = True
    session = route(url, None)
    if isinstance(session, str):
        return failed(session)
    try:
        for _hop in range(limits.max_redirects + 1):
            async with session.get(
                current, headers=headers, allow_redirects=False, timeout=timeouts(limits)
            ) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        return failed(
                            f"the server redirected (HTTP {response.status}) without saying where",
                            response.status,
                        )
                    try:
                        target = str(response.url.join(URL(location)))
                    except (ValueError, TypeError) as e:
                        return failed(
                            f"the server redirected to {location!r}, not a valid address ({e})",
                            response.status,
                        )
                    permanent = permanent and response.status in _PERMANENT
                    if target in visited:
                        loop = " -> ".join(visited[visited.index(target) :] + [target])
                        return failed(f"the server redirects in a loop: {loop}", response.status)
                    session = route(target, current)
                    if isinstance(session, str):
                        return failed(session, response.status)
                    visited.append(target)
                    current = http_url(target)
                    continue
                moved = current if permanent and len(visited) > 1 else None
                return await _answer(response, url, limits, validators, started, moved, failed)
        return failed(
            f"more than {limits.max_redirects} redirects ({visited[0]} -> ... -> {visited[-1]}); "
            "give us the feed's final address"
        )
    except TimeoutError:
        return failed(
            f"no complete answer within {limits.total_timeout:g} s (timed out)", transient=True
        )
    except aiohttp.ClientPayloadError as e:
        return failed(f"the connection broke off in the middle of the feed ({e})", transient=True)
    except aiohttp.ClientConnectorError as e:
        return failed(f"could not connect to {e.host}:{e.port} ({e.os_error or e})", transient=True)
    except aiohttp.InvalidURL as e:
        return failed(f"not a valid address: {e}")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
        return failed(f"the server closed the connection ({e})", transient=True)
    except aiohttp.ClientError as e:
        return failed(f"the fetch failed: {type(e).__name__}: {e}")
    except (UnicodeError, ValueError) as e:
        return failed(f"not a valid address: {current} ({type(e).__name__}: {e})")
    except OSError as e:
        return failed(f"the connection failed ({e.strerror or e})", transient=True)


async def _answer(response, url, limits, validators, started, moved, failed) -> FetchResult:
    status = response.status
    if status == 304:
        return FetchResult(
            FetchOutcome.NOT_MODIFIED,
            url,
            final_url=str(response.url),
            status=304,
            validators=validators,
            duration=time.monotonic() - started,
            moved_to=moved,
        )
    if status == 410:
        return failed(
            "the server says the feed is gone for good (HTTP 410 Gone); "
            "ask the member for its new address",
            status,
            gone=True,
        )
    if status == 429 or status >= 500:
        retry_after = _retry_after(response.headers)
        wait = f"; it asks us to wait {retry_after:g} s" if retry_after is not None else ""
        reason = "too many requests" if status == 429 else "a server error"
        return failed(
            f"the server answered HTTP {status} {response.reason or ''} ({reason}){wait}",
            status,
            transient=True,
            retry_after=retry_after,
        )
    if status >= 400:
        hint = "; check the feed's address" if status in (401, 403, 404) else ""
        return failed(f"the server answered HTTP {status} {response.reason or ''}{hint}", status)
    if response.content_length is not None and response.content_length > limits.max_bytes:
        return failed(
            f"the feed is {response.content_length:,} bytes, more than the limit "
            f"of {limits.max_bytes:,} bytes",
            status,
        )
    body = bytearray()
    # iter_chunked yields decompressed bytes, so the cap also stops a gzip bomb
    async for chunk in response.content.iter_chunked(_CHUNK):
        body.extend(chunk)
        if len(body) > limits.max_bytes:
            return failed(
                f"the feed is larger than the limit of {limits.max_bytes:,} bytes "
                "(after decompression)",
                status,
            )
    return FetchResult(
        FetchOutcome.OK,
        url,
        final_url=str(response.url),
        status=status,
        body=bytes(body),
        content_type=response.content_type,
        charset=response.charset,
        validators=Validators(
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        ),
        duration=time.monotonic() - started,
        moved_to=moved,
    )


def _retry_after(headers) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110 section 10.2.3)."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = _aware(parsedate_to_datetime(value))
        sent = _aware(parsedate_to_datetime(headers["Date"])) if "Date" in headers else None
    except (TypeError, ValueError, IndexError):
        return None
    reference = sent or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _aware(value: datetime) -> datetime:
    """'-0000' dates parse naive (RFC 5322: UTC, source unknown)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _read_file(url: str, limits: Limits, started: float) -> FetchResult:
    path = Path(urlsplit(url).path if url.startswith("file:") else url)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            error = f"the file is {size:,} bytes, more than the limit of {limits.max_bytes:,} bytes"
            return FetchResult(FetchOutcome.FAILED, url, error=error)
        body = path.read_bytes()
    except OSError as e:
        return FetchResult(
            FetchOutcome.FAILED,
            url,
            error=f"cannot read {path}: {e.strerror or e}",
            duration=time.monotonic() - started,
        )
    return FetchResult(
        FetchOutcome.OK, url, final_url=str(path), body=body, duration=time.monotonic() - started
    )
