"""make_app(): the aiohttp routes. Bodies are rendered once per change of the data and kept
as bytes with a strong ETag; requests are answered from those bytes (304 when they match).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ipaddress
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregator import __version__, metrics
from aggregator.check import check_feed, read_body, uploaded
from aggregator.fetch import Fetcher, open_session
from aggregator.guard import Guard, Refused
from aggregator.model import NetworkEvent, Settings, Status
from aggregator.normalise import clean_url, iso
from aggregator.page import (
    STYLE_HASH,
    choose_language,
    refused_filter,
    render_check,
    render_event,
    render_index,
    render_source,
    render_sources,
)
from aggregator.refresh import publish
from aggregator.render.atom import render_atom
from aggregator.render.health import hint, state_hints, timeline_svg
from aggregator.render.ics import render_calendar
from aggregator.render.json import event_json, render_json
from aggregator.schedule import Scheduler
from aggregator.selection import Selection, UnknownChoice
from aggregator.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
OUTPUTS = web.AppKey("outputs", "Outputs")
CLOCK = web.AppKey("clock", Clock)
CHECKER = web.AppKey("checker", "Checker")
#: network.trusted_proxies, parsed: peers whose X-Forwarded-For names the client
PROXIES = web.AppKey("proxies", Networks)

ICS = "text/calendar"
ATOM = "application/atom+xml"
JSON = "application/json"
HTML = "text/html"
#: entries in the Atom feed (the newest changes, within 30 days)
FEED_ENTRIES = 200
#: rendered bodies kept at most: filtered outputs each have their own
KEPT_BODIES = 256
#: the Server header: a name, no versions to match against a list of known holes
SERVER = "aggregator"
#: every HTML page: our own files only, no inline script, the one inline <style> by its
#: hash, forms sent only to us, no <base> or plugins
PAGE_POLICY = (
    f"default-src 'self'; style-src 'self' {STYLE_HASH}; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)
#: the page to embed (/) may be framed by any site (members' and the umbrella's websites);
#: every other page only by our own
FRAMED_POLICY = f"{PAGE_POLICY}; frame-ancestors 'self'"


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str
    etag: str
    #: gzip of data, made once (mtime 0, so the same data gives the same bytes)
    gzipped: bytes

    @classmethod
    def of(cls, data: bytes, content_type: str) -> Body:
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        return cls(data, content_type, etag, gzip.compress(data, mtime=0))


class Outputs:
    """Rendered bodies, kept until the data changes.

    The in-process scheduler says so at once (invalidate); a change made by another process
    (`aggregator refresh` from cron, a second web process) is seen through the store's data
    version, looked at no more than once a second.
    """

    def __init__(self, store: Store, settings: Settings, poll_every: float = 1.0) -> None:
        self.store = store
        self.settings = settings
        self.poll_every = poll_every
        self._bodies: dict[str, Body] = {}
        self._events: list[NetworkEvent] | None = None
        self._version: int | None = None
        self._polled = float("-inf")
        self._lock = asyncio.Lock()
        #: bumped by every invalidation; what was read before one is never kept after it
        self._generation = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._bodies.clear()
        self._events = None

    async def _poll(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._polled < self.poll_every:
            return
        self._polled = now
        version = await self.store.data_version()
        if version != self._version:
            self.invalidate()
            self._version = version

    async def events(self) -> list[NetworkEvent]:
        await self._poll()
        if self._events is not None:
            return self._events
        generation = self._generation
        events = await self.store.published_events()
        if generation == self._generation:  # no publish while we read: keep it
            self._events = events
        return events

    async def body(
        self, name: str, render: Callable[[list[NetworkEvent]], Awaitable[Body] | Body]
    ) -> Body:
        await self._poll()
        body = self._bodies.get(name)
        if body is not None:
            return body
        async with self._lock:
            body = self._bodies.get(name)
            if body is None:
                generation = self._generation
                events = await self.events()
                started = time.perf_counter()
                result = render(events)
                body = await result if asyncio.iscoroutine(result) else result
                took = time.perf_counter() - started
                metrics.RENDER_SECONDS.labels(metrics.output_name(name)).observe(took)
                if generation == self._generation:
                    if len(self._bodies) >= KEPT_BODIES:  # the oldest filter goes first
                        del self._bodies[next(iter(self._bodies))]
                    self._bodies[name] = body
            return body


def serve(settings: Settings, host: str, port: int, scheduler: bool = True) -> None:
    """Run the web server (and the scheduler) until SIGINT or SIGTERM."""
    # merges and publishes run in threads; a thread that computes keeps the GIL for up to the
    # switch interval each time the event loop asks for it: 1 ms, not 5, keeps answers quick
    sys.setswitchinterval(0.001)
    web.run_app(
        make_app(settings, scheduler=scheduler),
        host=host,
        port=port,
        print=lambda _: print(
            f"Serving {settings.network.name} on http://{host}:{port}/", flush=True
        ),
    )


def make_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = system_clock,
    scheduler: bool = True,
    check_guard: Guard | None = None,
    check_resolver: AbstractResolver | None = None,
) -> web.Application:
    """The web application; with scheduler=True it also refreshes sources on their schedule.

    `check_guard` and `check_resolver` are for tests of /check: a guard that lets a local
    server play a public one, and a resolver that sends its name there.
    """
    app = web.Application(middlewares=[measured], client_max_size=settings.limits.max_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[PROXIES] = tuple(
        ipaddress.ip_network(proxy, strict=False) for proxy in settings.network.trusted_proxies
    )
    app.on_response_prepare.append(secure_headers)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        own_store = store is None
        app[STORE] = store or await Store.open(settings.database_url)
        await app[STORE].sync_sources(
            settings.sources, now=clock(), allow_removals=settings.allow_removals
        )
        # a changed configuration (base URL, languages) re-renders what is published; a bug
        # there must not stop the start: what was published before is served meanwhile
        try:
            await publish(app[STORE], settings, clock())
        except Exception:
            log.exception("publishing at start failed; serving what was published before")
        app[OUTPUTS] = Outputs(app[STORE], settings)
        session = open_session(settings.network, settings.limits)
        guard = check_guard or Guard()
        app[CHECKER] = Checker(
            guard, open_session(settings.network, settings.limits, guard.resolver(check_resolver))
        )
        jobs = None
        if scheduler:
            fetcher = Fetcher(session, settings.limits)
            jobs = Scheduler(app[STORE], fetcher, settings, clock, app[OUTPUTS].invalidate)
            await jobs.start()
        yield
        if jobs is not None:
            jobs.shutdown()
            await fetcher.close()
        await session.close()
        await app[CHECKER].session.close()
        if own_store:
            await app[STORE].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", index)
    app.router.add_get("/calendar.ics", calendar)
    app.router.add_get("/feed.atom", atom)
    app.router.add_get("/events.json", events_json)
    app.router.add_get("/events/{id}.ics", event_ics)
    app.router.add_get("/events/{id}.json", event_detail)
    app.router.add_get("/events/{id}", event_page)
    app.router.add_get("/sources", sources_page)
    app.router.add_get("/sources.json", sources_page)
    app.router.add_get("/sources/{id}.json", source_page)
    app.router.add_get("/sources/{id}", source_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/check", check_page)
    app.router.add_post("/check", check_page)
    return app


class Checker:
    """What /check fetches with: its own session, whose resolver refuses non-public
    addresses, and how often each client has asked lately."""

    #: checks per client in `PER` seconds
    RATE = 10
    PER = 600.0

    def __init__(self, guard: Guard, session) -> None:
        self.guard = guard
        self.session = session
        self._asked: dict[str, list[datetime]] = {}

    def wait(self, client: str, now: datetime) -> float:
        """Seconds until `client` may check again (0: now), counting this request."""
        recent = [t for t in self._asked.get(client, []) if (now - t).total_seconds() < self.PER]
        if len(recent) >= self.RATE:
            self._asked[client] = recent
            return self.PER - (now - recent[0]).total_seconds()
        self._asked[client] = [*recent, now]
        if len(self._asked) > 10_000:  # forget the quiet ones
            self._asked = {
                c: t for c, t in self._asked.items() if (now - t[-1]).total_seconds() < self.PER
            }
        return 0.0


async def check_page(request: web.Request) -> web.Response:
    """A member pastes a feed URL (or uploads a file) and gets the report of
    `aggregator check`, with nothing stored. Only public addresses are fetched."""
    settings = request.app[SETTINGS]
    wants_json = request.query.get("format") == "json" or asks_json(request)
    checker = request.app[CHECKER]
    now = request.app[CLOCK]()
    # counted before the body is read: a client over its limit costs no upload
    if request.method == "POST" or str(request.query.get("url") or "").strip():
        wait = checker.wait(client_address(request), now)
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text=f"too many checks from your address; try again in {wait:.0f} s\n",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
    try:
        form = await request.post() if request.method == "POST" else request.query
    except ValueError as error:  # a multipart body that is not one
        raise web.HTTPBadRequest(text=f"could not read the form: {error}\n") from None
    url = str(form.get("url") or "").strip()
    upload = form.get("file")
    if not url and not getattr(upload, "file", None):
        if wants_json:
            raise web.HTTPBadRequest(text="give a feed address as ?url=, or upload a file\n")
        return _html_response(render_check(settings, lang=language(request)))
    limits = settings.limits
    fetcher = Fetcher(checker.session, limits, check_url=checker.guard.check_url)
    try:
        if url:
            malformed = _malformed(url)
            if malformed:
                raise Refused(malformed)
            report = await check_feed(url, fetcher, settings.network, limits, now)
        else:
            body = upload.file.read(limits.max_bytes + 1)
            if len(body) > limits.max_bytes:
                raise Refused(f"the file is larger than {limits.max_bytes} bytes")
            name = upload.filename or "upload"
            result = uploaded(body, name)
            report = await read_body(result, name, fetcher, settings.network, limits, now)
    except (Refused, ValueError, UnicodeError) as error:
        # an address that slipped past _malformed and failed deeper (yarl, the IDNA codec)
        # is still the member's typo, not our fault: a 400 in words, never a 500
        message = (
            error.message
            if isinstance(error, Refused)
            else f"{url or 'the file'} could not be read as a feed address: {error}"
        )
        if wants_json:
            return web.json_response({"error": message}, status=400)
        page = render_check(settings, lang=language(request), refused=message)
        return _html_response(page, status=400)
    if wants_json:
        return _no_cache_json({"target": report.target, **report.as_json()})
    return _html_response(render_check(settings, report, lang=language(request)))


def _malformed(url: str) -> str | None:
    """Why `url` is not an address /check can fetch, or None: checked before any name is
    looked up, so a typo is answered in words and costs no DNS query."""
    if not url.isprintable():
        return f"{url!r} has control characters in it; paste the address alone"
    scheme, sep, rest = url.partition("://")
    # webcal:// is https:// by convention (fetch reads it so)
    probe = f"https://{rest}" if sep and scheme.lower() == "webcal" else url
    if clean_url(probe) is None:
        return (
            f"{url!r} is not a valid web address (a host name, an optional port up to 65535); "
            "only http, https and webcal addresses can be checked"
        )
    return None


def client_address(request: web.Request) -> str:
    """The client's address, for anything kept per client (the /check limit).

    From a peer in network.trusted_proxies it is the right-most X-Forwarded-For address that
    is not itself a trusted proxy (each proxy appends the address it saw; what is left of
    that is the client's to write, so it is never believed); from anyone else the header is
    ignored and the peer is the client."""
    peer = request.remote or "unknown"
    proxies = request.app[PROXIES]
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


def _html_response(page: str, status: int = 200) -> web.Response:
    return web.Response(
        text=page,
        status=status,
        content_type=HTML,
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": FRAMED_POLICY},
    )


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors and 304s too (on_response_prepare): no MIME sniffing (a
    feed's text served as text/plain never runs as HTML or script), no full URL (with its
    filter) in the Referer sent to other sites, and a Server header without versions. An
    HTML page that set no policy (aiohttp's own error pages) gets the strict one."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    headers["Server"] = SERVER
    if response.content_type == HTML and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = FRAMED_POLICY


@web.middleware
async def measured(request: web.Request, handler) -> web.StreamResponse:
    """Requests by route (its pattern, not the path: /events/{id}) and status; 304s. A
    handler that raises is counted as the 500 aiohttp answers for it."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as error:
        metrics.REQUESTS.labels(route, str(error.status)).inc()
        raise
    except Exception:
        metrics.REQUESTS.labels(route, "500").inc()
        raise
    metrics.REQUESTS.labels(route, str(response.status)).inc()
    if response.status == 304:
        metrics.NOT_MODIFIED.labels(route).inc()
    return response


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format; each member source's occurrences and state read now."""
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    states = await store.source_states()
    metrics.OCCURRENCES.clear()
    for source in settings.sources:
        state = states.get(source.id)
        health = state.health if state else "never fetched"
        count = state.occurrence_count if state else 0
        metrics.OCCURRENCES.labels(source.id, health).set(count)
    metrics.EVENTS.set(len(await request.app[OUTPUTS].events()))
    return web.Response(
        body=generate_latest(metrics.REGISTRY),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding takes gzip (RFC 9110 section 12.5.3: 'gzip;q=0' refuses it)."""
    for part in header.split(","):
        token, *params = (p.strip() for p in part.split(";"))
        if token.lower() != "gzip":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def answer(
    request: web.Request,
    body: Body,
    *,
    cors: bool = True,
    max_age: int = 300,
    policy: str | None = None,
) -> web.Response:
    """Serve kept bytes: 304 when the ETag matches, gzip when the client takes it.
    `policy`: an HTML page's Content-Security-Policy (on its 304 too)."""
    gz = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    # strong ETags differ per encoding (RFC 9110 section 8.8.3)
    etag = body.etag[:-1] + '-gz"' if gz else body.etag
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}",
        "Vary": "Accept-Encoding",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    if policy:
        headers["Content-Security-Policy"] = policy
    match = {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in match or body.etag in match or "*" in match:
        return web.Response(status=304, headers=headers)
    content_type = f"{body.content_type}; charset=utf-8"
    if gz:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body.gzipped, headers={**headers, "Content-Type": content_type})
    return web.Response(body=body.data, headers={**headers, "Content-Type": content_type})


CANCELLED_POLICIES = ("status", "prefix", "hide")


async def calendar(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    policy = request.query.get("cancelled", "status")
    if policy not in CANCELLED_POLICIES:
        raise web.HTTPBadRequest(
            text=f"cancelled={policy!r}: use one of {', '.join(CANCELLED_POLICIES)}\n"
        )
    chosen = selection(request)
    body = await request.app[OUTPUTS].body(
        f"calendar.ics?cancelled={policy}&{chosen.query()}",
        lambda events: Body.of(
            render_calendar([e for e in events if chosen.admits(e.event)], network, policy), ICS
        ),
    )
    response = answer(request, body)
    response.headers["Content-Disposition"] = 'inline; filename="calendar.ics"'
    return response


async def atom(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    store = request.app[STORE]

    chosen = selection(request)

    async def render(events) -> Body:
        if not chosen:
            return Body.of(render_atom(await store.recent_changes(), network), ATOM)
        # an event's changes are in when the event is (as it is now)
        wanted = {e.event.id for e in events if chosen.admits(e.event)}
        changes = [c for c in await store.recent_changes(None) if c.event_id in wanted]
        return Body.of(render_atom(changes[:FEED_ENTRIES], network), ATOM)

    name = f"feed.atom?{chosen.query()}"
    return answer(request, await request.app[OUTPUTS].body(name, render))


async def events_json(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    store = request.app[STORE]

    chosen = selection(request)

    async def render(events) -> Body:
        shown = [e for e in events if chosen.admits(e.event)]
        return Body.of(render_json(shown, network, await store.event_history()), JSON)

    name = f"events.json?{chosen.query()}"
    return answer(request, await request.app[OUTPUTS].body(name, render))


def selection(request: web.Request) -> Selection:
    """The ?source=&category=&status= of a filtered output; 400 with the reason if wrong."""
    try:
        return Selection.from_query(request.query, (s.id for s in request.app[SETTINGS].sources))
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None


async def _find(request: web.Request) -> NetworkEvent:
    wanted = request.match_info["id"]
    for item in await request.app[OUTPUTS].events():
        if item.event.id == wanted:
            return item
    raise web.HTTPNotFound(text=f"no event with id {wanted!r}\n")


async def event_ics(request: web.Request) -> web.Response:
    item = await _find(request)
    network = request.app[SETTINGS].network
    body = await request.app[OUTPUTS].body(
        f"events/{item.event.id}.ics", lambda _: Body.of(render_calendar([item], network), ICS)
    )
    response = answer(request, body)
    response.headers["Content-Disposition"] = f'attachment; filename="{item.event.id}.ics"'
    return response


async def event_detail(request: web.Request) -> web.Response:
    item = await _find(request)
    network = request.app[SETTINGS].network
    store = request.app[STORE]

    async def render(_events) -> Body:
        history = (await store.event_history()).get(item.event.id, [])
        return Body.of(_dumps(event_json(item, network, history)), JSON)

    return answer(request, await request.app[OUTPUTS].body(f"events/{item.event.id}.json", render))


async def event_page(request: web.Request) -> web.Response:
    """One event as HTML, with its member copies and its history; JSON when asked for it."""
    if asks_json(request):
        return await event_detail(request)
    item = await _find(request)
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    lang = language(request)

    async def render(_events) -> Body:
        history = (await store.event_history()).get(item.event.id, [])
        return Body.of(render_event(item, settings, history, lang=lang).encode("utf-8"), HTML)

    body = await request.app[OUTPUTS].body(f"events/{item.event.id}.html?lang={lang}", render)
    response = answer(request, body, cors=False, max_age=60, policy=FRAMED_POLICY)
    response.headers["Vary"] = "Accept-Encoding, Accept-Language"
    return response


def _source_json(source, state) -> dict:
    return {
        "id": source.id,
        "name": source.name,
        "url": source.url,
        "kind": source.kind.value,
        "homepage": source.homepage,
        "state": state.health if state else "never fetched",
        "status": state.describe() if state else "never fetched",
        "last_fetch_at": iso(state.last_fetch_at) if state else None,
        "last_success_at": iso(state.last_success_at) if state else None,
        "last_error": state.last_error if state else None,
        "failures_in_row": state.failures_in_row if state else 0,
        "failing_since": iso(state.failing_since) if state else None,
        "held_drop": state.held_drop if state else None,
        "gone_at": iso(state.gone_at) if state else None,
        "moved_to": state.moved_to if state else None,
        "next_check_at": iso(state.next_check_at) if state else None,
        "occurrences": state.occurrence_count if state else 0,
        "warnings": list(state.warnings) if state else [],
    }


def _no_cache_json(value: object) -> web.Response:
    return web.Response(
        body=_dumps(value),
        content_type=JSON,
        charset="utf-8",
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
    )


def asks_json(request: web.Request) -> bool:
    """A client that asks for JSON and not for HTML (a browser always names text/html)."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def wants_html(request: web.Request) -> bool:
    """A browser (it asks for text/html) gets the page; curl, scripts and ?format=json JSON."""
    if request.query.get("format") == "json" or request.path.endswith(".json"):
        return False
    return "text/html" in request.headers.get("Accept", "")


async def sources_page(request: web.Request) -> web.Response:
    """Every member source's health: what a member organisation looks at first."""
    settings = request.app[SETTINGS]
    states = await request.app[STORE].source_states()
    rows = [_source_json(s, states.get(s.id)) for s in settings.sources]
    if not wants_html(request):
        return _no_cache_json({"sources": rows})
    page = render_sources(settings, rows, lang=language(request), now=request.app[CLOCK]())
    return _html_response(page)


async def source_page(request: web.Request) -> web.Response:
    """One source's health: state, what was read and skipped (with hints to fix it), what
    was merged with whom, and its fetches of the last 30 days (a timeline and a list)."""
    settings = request.app[SETTINGS]
    try:
        source = settings.source(request.match_info["id"])
    except KeyError:
        raise web.HTTPNotFound(text=f"no source {request.match_info['id']!r}\n") from None
    store = request.app[STORE]
    state = (await store.source_states()).get(source.id)
    lang = language(request)
    fetches = await store.fetch_history(source.id, limit=500)
    history = [
        {
            "at": iso(fetch.at),
            "outcome": fetch.outcome.value,
            "message": fetch.message or fetch.error,
            "status": fetch.status,
            "duration": round(fetch.duration, 3),
            "bytes": fetch.bytes,
            "occurrences": fetch.occurrences,
        }
        for fetch in fetches
    ]
    names = {s.id: s.name for s in settings.sources}
    merged = [
        {
            "event": item.event.id,
            "title": item.event.title,
            "start": iso(item.event.start),
            "with": [s for s in item.event.source_ids if s != source.id],
            "with_names": [names[s] for s in item.event.source_ids if s != source.id],
        }
        for item in await request.app[OUTPUTS].events()
        if source.id in item.event.source_ids and len(item.event.source_ids) > 1
    ]
    occurrences = await store.load_occurrences(source.id)
    row = {
        **_source_json(source, state),
        "series": len({o.uid for o in occurrences if o.recurrence_id}),
        "cancelled": sum(o.status in (Status.CANCELLED, Status.POSTPONED) for o in occurrences),
        "problems": [{"what": w, "hint": h} for w, h in state_hints(state, lang)],
        "hints": [{"what": w, "hint": hint(w, lang)} for w in (state.warnings if state else ())],
        "merged": merged,
        "fetches": history,
    }
    if not wants_html(request):
        return _no_cache_json(row)
    now = request.app[CLOCK]()
    timeline = timeline_svg(fetches, now)
    return _html_response(render_source(settings, row, lang=lang, now=now, timeline=timeline))


async def healthz(request: web.Request) -> web.Response:
    counts = await request.app[STORE].counts()
    return web.Response(
        body=_dumps({"status": "ok", "version": __version__, **counts}),
        content_type=JSON,
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def index(request: web.Request) -> web.Response:
    """The embeddable page: ?lang=, ?source=, ?category=, ?status=, ?embed=1 (see page.py).
    The filter is read as the feeds read it, and keys the kept page by its normalised form:
    however a filter is written, it is one entry, and a value cannot spell another's."""
    settings = request.app[SETTINGS]
    lang = language(request)
    try:
        chosen = Selection.from_query(request.query, (s.id for s in settings.sources))
    except UnknownChoice as error:
        raise web.HTTPBadRequest(text=f"{refused_filter(error, lang)}\n") from None
    embed = request.query.get("embed") == "1"
    now = request.app[CLOCK]()
    # "upcoming" moves with the clock: a kept page lives at most until the hour turns
    name = f"index.html?lang={lang}&embed={embed}&hour={now:%Y%m%d%H}&{chosen.query()}"
    body = await request.app[OUTPUTS].body(
        name,
        lambda events: Body.of(
            render_index(events, settings, lang=lang, now=now, filters=chosen, embed=embed).encode(
                "utf-8"
            ),
            HTML,
        ),
    )
    # no frame-ancestors: the page is made to be embedded anywhere
    response = answer(request, body, cors=False, max_age=60, policy=PAGE_POLICY)
    response.headers["Vary"] = "Accept-Encoding, Accept-Language"
    return response


def language(request: web.Request) -> str:
    return choose_language(
        request.query.get("lang"),
        request.headers.get("Accept-Language"),
        request.app[SETTINGS].network.languages,
    )


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
