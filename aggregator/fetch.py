"""The only network client: http(s), webcal (as https) and local files -> FetchResult.

Never raises for a feed's fault: every outcome, good or bad, comes back as a FetchResult
whose `error` says what happened in words a member can act on.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from aggregator import __version__
from aggregator.model import FetchOutcome, FetchResult, Limits, Network, Source, Validators

_CHUNK = 64 * 1024
ACCEPT = (
    "text/calendar, application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
)


def user_agent(network: Network) -> str:
    return f"aggregator/{__version__} (+{network.base_url}; {network.name})"


def timeouts(limits: Limits) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=limits.total_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.total_timeout,
    )


def open_session(network: Network, limits: Limits) -> aiohttp.ClientSession:
    """One session per process (aiohttp: "Don't create a session per request")."""
    return aiohttp.ClientSession(
        timeout=timeouts(limits),
        headers={"User-Agent": user_agent(network), "Accept": ACCEPT},
        # a member's server may send cookies; we never want them to change what we read
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def http_url(url: str) -> str:
    """webcal:// is https:// by convention (Apple's scheme for subscriptions)."""
    parts = urlsplit(url)
    if parts.scheme == "webcal":
        return urlunsplit(("https",) + tuple(parts[1:]))
    return url


def is_local(url: str) -> bool:
    return urlsplit(url).scheme not in ("http", "https", "webcal")


async def fetch_source(
    session: aiohttp.ClientSession | None,
    source: Source,
    limits: Limits,
    validators: Validators | None = None,
) -> FetchResult:
    """Fetch one source, conditionally when validators are given."""
    return await fetch_url(session, source.url, limits, validators or Validators())


async def fetch_url(
    session: aiohttp.ClientSession | None,
    url: str,
    limits: Limits,
    validators: Validators | None = None,
) -> FetchResult:
    started = time.monotonic()
    if is_local(url):
        return _read_file(url, limits, started)
    if session is None:
        raise ValueError("an HTTP source needs a ClientSession")
    target = http_url(url)
    validators = validators or Validators()
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified

    def failed(error: str, status: int | None = None, final_url: str | None = None) -> FetchResult:
        return FetchResult(
            FetchOutcome.FAILED,
            url,
            final_url=final_url,
            status=status,
            error=error,
            duration=time.monotonic() - started,
        )

    try:
        # aiohttp gives up on its n-th redirect; we follow up to n (0: follow none)
        async with session.get(
            target,
            headers=headers,
            allow_redirects=limits.max_redirects > 0,
            max_redirects=limits.max_redirects + 1,
            timeout=timeouts(limits),
        ) as response:
            final_url = str(response.url)
            if response.status == 304:
                return FetchResult(
                    FetchOutcome.NOT_MODIFIED,
                    url,
                    final_url=final_url,
                    status=304,
                    validators=validators,
                    duration=time.monotonic() - started,
                )
            if 300 <= response.status < 400:
                return failed(
                    f"the server redirected (HTTP {response.status}) and we follow "
                    f"at most {limits.max_redirects} redirects",
                    response.status,
                    final_url,
                )
            if response.status >= 400:
                return failed(
                    f"the server answered HTTP {response.status} {response.reason or ''}".strip(),
                    response.status,
                    final_url,
                )
            if response.content_length is not None and response.content_length > limits.max_bytes:
                return failed(
                    f"the feed is {response.content_length:,} bytes, more than the limit "
                    f"of {limits.max_bytes:,} bytes",
                    response.status,
                    final_url,
                )
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body.extend(chunk)
                if len(body) > limits.max_bytes:
                    return failed(
                        f"the feed is larger than the limit of {limits.max_bytes:,} bytes",
                        response.status,
                        final_url,
                    )
            return FetchResult(
                FetchOutcome.OK,
                url,
                final_url=final_url,
                status=response.status,
                body=bytes(body),
                content_type=response.content_type,
                charset=response.charset,
                validators=Validators(
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                ),
                duration=time.monotonic() - started,
            )
    except aiohttp.TooManyRedirects:
        return failed(f"more than {limits.max_redirects} redirects; check the feed's address")
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return failed(f"no complete answer within {limits.total_timeout:g} s (timed out)")
    except aiohttp.ClientPayloadError as e:
        return failed(f"the connection broke off in the middle of the feed ({e})")
    except aiohttp.ClientConnectorError as e:
        return failed(f"could not connect to {e.host}:{e.port} ({e.os_error or e})")
    except aiohttp.InvalidURL as e:
        return failed(f"not a valid URL: {e}")
    except aiohttp.ClientError as e:
        return failed(f"the fetch failed: {type(e).__name__}: {e}")


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
