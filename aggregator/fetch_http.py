"""One HTTP fetch of one address: the request, its redirects followed by hand, and the answer
read into a FetchResult. A failure comes back as a FAILED result with its Problem (a stable
code, the words a member can act on, the detail); nothing here raises but `route` (Refused,
under /check).

`fetch.Fetcher` decides which session asks each address (`route`) and retries; this module
only asks and reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial

import aiohttp
from yarl import URL

from aggregator.guard import scheme_of
from aggregator.model import FetchOutcome, FetchResult, Limits, Validators
from aggregator.problems import Problem, problem

__all__ = ["Route", "failure", "fetch_http", "http_url", "timeouts"]

_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_PERMANENT = (301, 308)
#: the session that asks an address, given it and the address that redirected to it (None
#: for the first), or why the address is not asked
Route = Callable[[str, str | None], aiohttp.ClientSession | Problem]


def http_url(url: str) -> str:
    """webcal:// is https:// by convention (Apple's scheme for subscriptions)."""
    if scheme_of(url) == "webcal":
        return "https" + url.strip()[len("webcal") :]
    return url


def timeouts(limits: Limits) -> aiohttp.ClientTimeout:
    # sock_read catches a server that stops talking; total catches one that drips
    return aiohttp.ClientTimeout(
        total=limits.total_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=min(limits.total_timeout, max(limits.connect_timeout, 30.0)),
    )


def failure(
    url: str, started: float, found: Problem, status: int | None = None, **kwargs
) -> FetchResult:
    """A FAILED result that says why: `found`, and its words as `error`."""
    return FetchResult(
        FetchOutcome.FAILED,
        url,
        status=status,
        error=found.words,
        problem=found,
        duration=time.monotonic() - started,
        **kwargs,
    )


async def fetch_http(
    route: Route, url: str, limits: Limits, validators: Validators, started: float
) -> FetchResult:
    """Ask `url`, following redirects by hand; `route` gives each address's session (or
    why it is not asked; it raises Refused under /check)."""
    session = route(url, None)
    if isinstance(session, Problem):
        return failure(url, started, session)
    # the addresses asked, in order: the last one is the one being asked
    visited = [http_url(url)]
    try:
        return await _follow(session, route, url, visited, limits, validators, started)
    except (TimeoutError, aiohttp.ClientError, UnicodeError, ValueError, OSError) as e:
        found, transient = _transport_problem(e, http_url(visited[-1]), limits)
        return failure(url, started, found, transient=transient)


async def _follow(
    session: aiohttp.ClientSession,
    route: Route,
    url: str,
    visited: list[str],
    limits: Limits,
    validators: Validators,
    started: float,
) -> FetchResult:
    """Ask each address in turn until one answers with something other than a redirect."""
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    permanent = True
    for _hop in range(limits.max_redirects + 1):
        current = http_url(visited[-1])
        async with session.get(
            current, headers=headers, allow_redirects=False, timeout=timeouts(limits)
        ) as response:
            if response.status not in _REDIRECTS:
                moved = current if permanent and len(visited) > 1 else None
                return await _answer(response, url, limits, validators, started, moved)
            permanent = permanent and response.status in _PERMANENT
            target = _redirect_target(response, visited)
            if isinstance(target, str):
                target_session = route(target, current)
                if not isinstance(target_session, Problem):
                    session = target_session
                    visited.append(target)
                    continue
                target = target_session
            return failure(url, started, target, response.status)
    first, last = visited[0], visited[-1]
    limit = limits.max_redirects
    return failure(url, started, problem("too-many-redirects", limit=limit, first=first, last=last))


def _redirect_target(response: aiohttp.ClientResponse, visited: list[str]) -> str | Problem:
    """Where a redirect goes, or why it goes nowhere we can follow."""
    location = response.headers.get("Location")
    if not location:
        return problem("redirect-nowhere", status=response.status)
    try:
        target = str(response.url.join(URL(location)))
    except (ValueError, TypeError) as e:
        return problem("redirect-invalid", location=repr(location), error=e)
    if target in visited:
        loop = " -> ".join(visited[visited.index(target) :] + [target])
        return problem("redirect-loop", loop=loop)
    return target


def _transport_problem(error: Exception, current: str, limits: Limits) -> tuple[Problem, bool]:
    """What went wrong on the way (not in an answer), and whether trying again may help.

    In the order of the exceptions' classes: an aiohttp timeout is a ClientError too, an
    InvalidURL a ValueError, a connector error an OSError.
    """
    if isinstance(error, TimeoutError):
        return problem("timeout", seconds=f"{limits.total_timeout:g}"), True
    if isinstance(error, aiohttp.ClientPayloadError):
        return problem("broken-off", error=error), True
    if isinstance(error, aiohttp.ClientConnectorError):
        return _connect_problem(error), True
    if isinstance(error, aiohttp.InvalidURL):
        return problem("address-invalid-url", error=error), False
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return problem("connection-closed", error=error), True
    if isinstance(error, aiohttp.ClientError):
        return problem("fetch-failed", error=f"{type(error).__name__}: {error}"), False
    if isinstance(error, (UnicodeError, ValueError)):
        words = f"{type(error).__name__}: {error}"
        return problem("address-invalid", url=current, error=words), False
    assert isinstance(error, OSError)
    return problem("connection-failed", error=error.strerror or error), True


def _connect_problem(error: aiohttp.ClientConnectorError) -> Problem:
    """No connection: the same words, with a code that tells a name that does not resolve
    and a server that refuses from the rest (each has its own hint)."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        code = "dns-failed"
    elif isinstance(error.os_error, ConnectionRefusedError):
        code = "connect-refused"
    else:
        code = "connect-failed"
    return problem(code, host=error.host, port=error.port, error=error.os_error or error)


async def _answer(
    response: aiohttp.ClientResponse,
    url: str,
    limits: Limits,
    validators: Validators,
    started: float,
    moved: str | None,
) -> FetchResult:
    """The final answer as a FetchResult: not modified, a failure, or the body."""
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
    failed = partial(failure, url, started, status=status)
    refused = _status_problem(response)
    if refused is not None:
        found, how = refused
        return failed(found, **how)
    limit = f"{limits.max_bytes:,}"
    if response.content_length is not None and response.content_length > limits.max_bytes:
        return failed(problem("too-big", size=f"{response.content_length:,}", limit=limit))
    body = bytearray()
    # iter_chunked yields decompressed bytes, so the cap also stops a gzip bomb
    async for chunk in response.content.iter_chunked(_CHUNK):
        body.extend(chunk)
        if len(body) > limits.max_bytes:
            return failed(problem("too-big-decompressed", limit=limit))
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


def _status_problem(response: aiohttp.ClientResponse) -> tuple[Problem, dict] | None:
    """What an HTTP status that is no success says, with how to take it (gone for good, worth
    another try soon, after how long); None for a success."""
    status, reason = response.status, response.reason or ""
    if status == 410:
        return problem("gone"), {"gone": True}
    if status == 429 or status >= 500:
        retry_after = _retry_after(response.headers)
        code = "too-many-requests" if status == 429 else "server-error"
        if retry_after is None:
            found = problem(code, status=status, reason=reason)
        else:
            wait = f"{retry_after:g}"
            found = problem(f"{code}-wait", status=status, reason=reason, seconds=wait)
        return found, {"transient": True, "retry_after": retry_after}
    if status >= 400:
        code = "http-check-address" if status in (401, 403, 404) else "http-status"
        return problem(code, status=status, reason=reason), {}
    return None


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
