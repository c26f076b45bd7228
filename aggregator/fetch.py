"""The only network client: http(s), webcal (as https) and local files -> FetchResult.

A polite client: conditional GET, at most `per_host` fetches at once to one host, timeouts,
a size cap that holds after decompression, redirects followed by hand (loops caught,
permanent moves noticed), transient failures retried with backoff and jitter, Retry-After
honoured. Never raises for a feed's fault: every outcome comes back as a FetchResult whose
`error` says what happened in words a member can act on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from aggregator import __version__
from aggregator.model import FetchOutcome, FetchResult, Limits, Network, Validators

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
    return aiohttp.ClientSession(
        timeout=timeouts(limits),
        headers={"User-Agent": user_agent(network), "Accept": ACCEPT},
        # a member's server may send cookies; we never want them to change what we read
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(
            limit=limits.concurrency, limit_per_host=limits.per_host, resolver=resolver
        ),
    )


def http_url(url: str) -> str:
    """webcal:// is https:// by convention (Apple's scheme for subscriptions)."""
    parts = urlsplit(url)
    if parts.scheme == "webcal":
        return urlunsplit(("https",) + tuple(parts[1:]))
    return url


def is_local(url: str) -> bool:
    return urlsplit(url).scheme not in ("http", "https", "webcal")


class Fetcher:
    """Fetches feeds politely; one per process, shared by every source."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        limits: Limits,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.limits = limits
        self.sleep = sleep
        self.jitter = jitter
        #: called with every address before it is asked, redirects included; raises to refuse
        self.check_url = check_url
        self._all = asyncio.Semaphore(limits.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def fetch(self, url: str, validators: Validators | None = None) -> FetchResult:
        """Fetch once, retrying transient failures with backoff inside this call."""
        started = time.monotonic()
        if self.check_url is not None:
            self.check_url(url)
        if is_local(url):
            return _read_file(url, self.limits, started)
        if self.session is None:
            raise ValueError("an HTTP source needs a ClientSession")
        validators = validators or Validators()
        attempt = 0
        while True:
            attempt += 1
            result = await self._limited(url, validators, started)
            if not result.transient or attempt > self.limits.retries:
                return replace(result, attempts=attempt, duration=time.monotonic() - started)
            # exponential backoff with jitter (0.5x-1.5x), never sooner than Retry-After
            delay = self.limits.retry_delay * 2 ** (attempt - 1) * (0.5 + self.jitter())
            if result.retry_after is not None:
                if result.retry_after > self.limits.max_retry_wait:
                    return replace(result, attempts=attempt, duration=time.monotonic() - started)
                delay = max(delay, result.retry_after)
            await self.sleep(delay)

    async def _limited(self, url: str, validators: Validators, started: float) -> FetchResult:
        host = urlsplit(http_url(url)).hostname or ""
        per_host = self._hosts.setdefault(host, asyncio.Semaphore(self.limits.per_host))
        # the host's turn first: a busy host must not hold global slots others could use
        async with per_host, self._all:
            return await _fetch_http(
                self.session, url, self.limits, validators, started, self.check_url
            )


async def _fetch_http(
    session: aiohttp.ClientSession,
    url: str,
    limits: Limits,
    validators: Validators,
    started: float,
    check_url: Callable[[str], None] | None = None,
) -> FetchResult:
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
                    target = str(response.url.join(URL(location)))
                    permanent = permanent and response.status in _PERMANENT
                    if target in visited:
                        loop = " -> ".join(visited[visited.index(target) :] + [target])
                        return failed(f"the server redirects in a loop: {loop}", response.status)
                    if check_url is not None:
                        check_url(target)
                    visited.append(target)
                    current = target
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
        return failed(f"not a valid URL: {e}")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
        return failed(f"the server closed the connection ({e})", transient=True)
    except aiohttp.ClientError as e:
        return failed(f"the fetch failed: {type(e).__name__}: {e}")


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
